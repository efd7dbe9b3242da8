"""Plan-time checks of a preference-tuning job (training.task=dpo) and of training.preference."""

from __future__ import annotations

from pathlib import Path

from launcher.config.schema import JobConfig
from launcher.problems import Findings

LOSSES = ("sigmoid", "ipo")
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


def check_preference(job: JobConfig, out: Findings, *, local_paths: bool) -> None:
    """The preference settings' ranges, and what a dpo job needs: a pretrained model, a layout and data it runs."""
    pref, task = job.training.preference, job.training.task
    if pref.loss not in LOSSES:
        out.error("training.preference.loss", f"unknown loss {pref.loss!r}; use one of {', '.join(LOSSES)}")
    if not pref.beta > 0:
        out.error("training.preference.beta", f"must be > 0, got {pref.beta}; 0.1 is the usual start")
    if not 0 <= pref.label_smoothing < 0.5:
        out.error("training.preference.label_smoothing", f"must be in [0, 0.5), got {pref.label_smoothing}")
    elif pref.label_smoothing > 0 and pref.loss != "sigmoid":
        out.error("training.preference.label_smoothing", "smooths the sigmoid loss only (conservative DPO); set it to "
                  "0 or training.preference.loss=sigmoid")
    if task != "dpo":
        return
    if job.model.pretrained_path is None:
        out.error("model.pretrained_path", "training.task=dpo tunes a pretrained model against itself as the "
                  "reference; set model.pretrained_path to a Hugging Face folder")
    if job.instance.accelerator.startswith("trainium"):
        out.error("training.task", "dpo runs on the GPU backend only (the NxD backend has no reference model "
                  "yet); use a GPU instance or training.task=sft")
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
