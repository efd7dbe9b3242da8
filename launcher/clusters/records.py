"""The submissions a remote cluster kind made from an output folder: <output_dir>/submissions.jsonl.

Each submission appends one JSON line (nothing is overwritten); status, logs and stop act on the latest.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from llm_launch.launcher.clusters.base import RunnerError

RECORDS_FILE = "submissions.jsonl"


def utc_now() -> datetime:
    return datetime.now(UTC)


def append_record(out_dir: Path, record: dict) -> None:
    """Add a submission record (append-only, one JSON object per line)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / RECORDS_FILE).open("a", encoding="utf-8") as records:
        records.write(json.dumps(record, sort_keys=True) + "\n")


def latest_record(out_dir: Path) -> dict:
    """The last submission made from out_dir."""
    try:
        lines = (out_dir / RECORDS_FILE).read_text(encoding="utf-8").splitlines()
    except OSError:
        lines = []
    if not lines:
        raise RunnerError(f"no submission recorded in {out_dir / RECORDS_FILE}; submit first with action=submit "
                          "(and the same recipe, overrides and output_dir)")
    return json.loads(lines[-1])
