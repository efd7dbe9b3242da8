"""Shared command-line handling of the training entrypoints (python -m train.<task> --job job.yaml)."""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import contextmanager
from pathlib import Path

from llm_launch.launcher.devices import uses_nxd
from llm_launch.launcher.elastic import WorldSizeError, is_elastic, layout_at, node_range, runtime_job
from llm_launch.launcher.jobfile import read_job
from llm_launch.launcher.run_lock import HELD_BY_LAUNCHER_ENV, FolderInUse, RunLock
from llm_launch.train.errors import JobError
from llm_launch.train.lifeline import tie_rank_to_launcher
from llm_launch.train.reporting import another_rank_reported, report
from llm_launch.train.s3_folders import localize_folders
from llm_launch.train.watchdog import end_with_hang, hang_taken_up


def run_entrypoint(task: str, argv: list[str] | None = None, job_runner=None) -> None:
    """Read job.yaml, check it is a job for this entrypoint, and run it with the instance's backend.

    job_runner(job, job_path=..., precompile=...) runs the job: llm_launch.train.trainer.train unless given.
    A problem of the job's input or state (JobError) ends it with one line from one rank, exit 2
    (train/reporting.py); any failure after the hang watchdog has taken up a hang, with the hang's code.
    """
    tie_rank_to_launcher()
    parser = argparse.ArgumentParser(prog=f"python -m train.{task}", description=f"Run a {task} job.")
    parser.add_argument("--job", required=True, help="resolved job.yaml written by llm-launch")
    parser.add_argument("--precompile", action="store_true",
                        help="NxD (Trainium 1) only: trace job.neuron.precompile_steps steps with the training topology (run "
                             "under neuron_parallel_compile); writes no checkpoint, export or COMPLETE marker")
    args = parser.parse_args(argv)
    job = read_job(args.job)
    if job.task != task:
        sys.exit(f"train.{task}: {args.job} is a '{job.task}' job; start llm_launch.train.{job.task}")
    if args.precompile and not uses_nxd(job):
        sys.exit(f"train.{task}: --precompile is for Trainium jobs on NxD (neuron_parallel_compile); this job runs on "
                 f"the torch engine ({job.instance.accelerator}), which has no ahead-of-time compile step; drop "
                 "--precompile")
    from llm_launch.train.accelerators import require_accelerators

    if job_runner is None:
        from llm_launch.train.trainer import train as job_runner
    try:
        job = elastic_layout(localize_folders(job))
        require_accelerators(job)
        with held_folders(job):
            job_runner(job, job_path=args.job, precompile=args.precompile)
    except JobError as exc:
        report(task, str(exc))
    except BaseException as exc:
        if hang_taken_up():
            end_with_hang()  # exits with the hang's code, however the main thread then failed
        if isinstance(exc, SystemExit | KeyboardInterrupt) or not another_rank_reported():
            raise
        sys.exit(2)  # this rank failed because the reporting rank is gone (DCP errors are BaseExceptions)


def elastic_layout(job):
    """An elastic job (trainer.min_nodes) laid out for the ranks torchrun started (launcher/elastic.py): the same
    global batch, dp and gradient accumulation from WORLD_SIZE; any other job unchanged."""
    if not is_elastic(job) or "WORLD_SIZE" not in os.environ:
        return job
    try:
        running = runtime_job(job, int(os.environ["WORLD_SIZE"]))
    except WorldSizeError as exc:
        raise JobError(str(exc)) from None
    if os.environ.get("RANK", "0") == "0":
        low, high = node_range(job)
        layout = layout_at(job, running.trainer.num_nodes).describe()
        print(f"elastic: nodes {low} to {high}, running on {layout}; global batch {job.training.global_batch_size}",
              flush=True)
    return running


@contextmanager
def held_folders(job):
    """Global rank 0 holds the output and checkpoint folders' locks while the job runs (launcher/run_lock.py)."""
    if os.environ.get("RANK", "0") != "0":
        yield
        return
    folders = [(job.output_dir, "output_dir")]
    ckpt = job.training.checkpoint.dir
    if ckpt and "://" not in ckpt and job.task in ("cpt", "sft"):
        folders.append((ckpt, "training.checkpoint.dir"))
    held_by_launcher = os.environ.get(HELD_BY_LAUNCHER_ENV)
    locks = []
    try:
        for folder, what in folders:
            if held_by_launcher and same_folder(held_by_launcher, folder):
                continue
            try:
                locks.append(RunLock(Path(folder), what).acquire())
            except FolderInUse as exc:
                raise JobError(str(exc)) from None
            if locks[-1].stale_note():
                print(locks[-1].stale_note(), flush=True)
        yield
    finally:
        for lock in locks:
            lock.release()


def same_folder(a: str | Path, b: str | Path) -> bool:
    """Whether two spellings name one folder (symlinks and .. resolved: the launcher and job.yaml spell it apart)."""
    return Path(a).resolve() == Path(b).resolve()
