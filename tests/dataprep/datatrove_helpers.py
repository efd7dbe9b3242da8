"""Helpers of the DataTrove pipeline tests: kept documents read back from the intermediates, shard hashes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from llm_launch.dataprep.manifest import run_fingerprint
from llm_launch.dataprep.pipeline import work_folder


def kept_ids(cfg) -> list[str]:
    """Ids (path:line ...) of the documents the DataTrove pipeline kept (needs output.keep_work)."""
    kept = Path(work_folder(cfg, run_fingerprint(cfg))) / "kept"
    ids = []
    for path in sorted(kept.glob("*.jsonl")):
        ids += [json.loads(line)["id"] for line in path.read_text(encoding="utf-8").splitlines()]
    return ids


def shard_hashes(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("shard_*.bin"))}
