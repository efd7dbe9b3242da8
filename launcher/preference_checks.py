"""Plan-time checks of a preference-tuning job (task=dpo) that span sections (training.preference checks its own
ranges in the schema)."""

from __future__ import annotations

from pathlib import Path

from launcher.config.schema import JobConfig
from launcher.problems import Findings

FIELDS = ("prompt", "chosen", "rejected")


def _first_record_fields(path: Path) -> set[str] | None:
    import json

    try:
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                if line.strip():
                    record = json.loads(line)
                    return set(record) if isinstance(record, dict) else set()
    except (OSError, ValueError):
        return None
    return None


def check_preference_job(job: JobConfig, out: Findings, *, local_paths: bool) -> None:
    """What a dpo job needs: a pretrained model, a backend and layout that run it, and preference records."""
    if job.model.pretrained_path is None:
        out.warn("model.pretrained_path", "task=dpo without a pretrained model tunes random weights against a random "
                 "reference; set model.pretrained_path to the Hugging Face folder of the model to align")
    if job.parallelism.pp > 1:
        out.error("parallelism.pp", "dpo needs each pair's chosen and rejected sequences on one stage to compare "
                  "them; use parallelism.pp=1 (tp and fsdp shard the model instead)")
    if not local_paths:
        return
    data = job.training.data
    for key, value in (("training.data.train_path", data.train_path), ("training.data.valid_path", data.valid_path)):
        if value is None or not Path(value).is_file():
            continue
        fields = _first_record_fields(Path(value))
        if fields is not None and not set(FIELDS) <= fields:
            have = ", ".join(sorted(fields)) or "none"
            out.error(key, f"dpo reads preference JSONL records with prompt, chosen and rejected; {value}'s first "
                      f"record has {have}")
