"""Shared command-line handling of the training entrypoints (python -m train.<task> --job job.yaml)."""

from __future__ import annotations

import argparse
import sys

from launcher.jobfile import read_job


def run_entrypoint(task: str, argv: list[str] | None = None, job_runner=None) -> None:
    """Read job.yaml, check it is a job for this entrypoint, and run it (train, unless job_runner is given)."""
    parser = argparse.ArgumentParser(prog=f"python -m train.{task}", description=f"Run a {task} job.")
    parser.add_argument("--job", required=True, help="resolved job.yaml written by llm-launch")
    args = parser.parse_args(argv)
    job = read_job(args.job)
    if job.training.task != task:
        sys.exit(f"train.{task}: {args.job} is a '{job.training.task}' job; start train.{job.training.task}")
    from train.errors import JobError

    if job_runner is None:
        from train.trainer import train as job_runner
    try:
        job_runner(job)
    except JobError as exc:
        sys.exit(f"train.{task}: {exc}")
