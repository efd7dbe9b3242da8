"""Shared command-line handling of the training entrypoints (python -m train.<task> --job job.yaml)."""

from __future__ import annotations

import argparse
import sys

from launcher.jobfile import read_job


def run_entrypoint(task: str, argv: list[str] | None = None, job_runner=None) -> None:
    """Read job.yaml, check it is a job for this entrypoint, and run it with the instance's backend.

    job_runner(job, job_path=..., precompile=...) runs the job: train.trainer.train unless given.
    """
    parser = argparse.ArgumentParser(prog=f"python -m train.{task}", description=f"Run a {task} job.")
    parser.add_argument("--job", required=True, help="resolved job.yaml written by llm-launch")
    parser.add_argument("--precompile", action="store_true",
                        help="Trainium only: trace job.neuron.precompile_steps steps with the training topology (run "
                             "under neuron_parallel_compile); writes no checkpoint, export or COMPLETE marker")
    args = parser.parse_args(argv)
    job = read_job(args.job)
    if job.training.task != task:
        sys.exit(f"train.{task}: {args.job} is a '{job.training.task}' job; start train.{job.training.task}")
    if args.precompile and not job.instance.accelerator.startswith("trainium"):
        sys.exit(f"train.{task}: --precompile is for Trainium jobs (neuron_parallel_compile); this job runs on "
                 f"{job.instance.accelerator}, which has no ahead-of-time compile step; drop --precompile")
    from train.accelerators import require_accelerators
    from train.errors import JobError

    if job_runner is None:
        from train.trainer import train as job_runner
    try:
        require_accelerators(job)
        job_runner(job, job_path=args.job, precompile=args.precompile)
    except JobError as exc:
        sys.exit(f"train.{task}: {exc}")
