"""Submission to SageMaker, EKS and Slurm, and status, logs and stop of a submitted job.

Each submission appends one JSON line to <output_dir>/submissions.jsonl (nothing is overwritten);
status, logs and stop act on the latest line. Failures that need the user's action (a missing
tool, no credentials, an unreachable cluster, a rejected request) end with one line and exit code 2.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from launcher.config.schema import JobConfig

RECORDS_FILE = "submissions.jsonl"
MANAGE_ACTIONS = ("status", "logs", "stop")


class RunnerError(Exception):
    """A submission or management step failed in a way the user must fix; the message is one line."""


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


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


def require_tool(name: str, hint: str) -> str:
    """Absolute path of a command-line tool, or a one-line error naming it."""
    path = shutil.which(name)
    if not path:
        raise RunnerError(f"{name} is not on PATH; {hint}")
    return path


def run_tool(argv: list[str], what: str) -> str:
    """Run a cluster tool; its stdout, or a one-line error with the last line it printed."""
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode:
        lines = [ln for ln in (done.stderr or done.stdout).strip().splitlines() if ln.strip()]
        detail = lines[-1] if lines else f"exit code {done.returncode}"
        raise RunnerError(f"{what} failed: {detail}")
    return done.stdout


def _runner(kind: str):
    if kind == "sagemaker":
        from launcher.runners import sagemaker as runner
    elif kind == "eks":
        from launcher.runners import eks as runner
    elif kind == "slurm":
        from launcher.runners import slurm as runner
    else:
        raise RunnerError(f"cluster.kind={kind} has no remote runner")
    return runner


def submit_remote(job: JobConfig, out_dir: Path) -> dict:
    """Submit the rendered files in out_dir and record the submission."""
    record = _runner(job.cluster.kind).submit(job, out_dir)
    record = {"cluster": job.cluster.kind, "submitted_at": utc_now().isoformat(timespec="seconds"), **record}
    append_record(out_dir, record)
    return record


def manage(action: str, out_dir: Path) -> None:
    """status, logs or stop of the latest submission from out_dir."""
    record = latest_record(out_dir)
    runner = _runner(record["cluster"])
    getattr(runner, action)(record, out_dir)
