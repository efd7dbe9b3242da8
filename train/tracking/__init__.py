"""Experiment trackers, one module per backend, registered in TRACKERS.

Each backend module offers start(job, plan, out_dir) -> Tracker on the rank that writes metrics; whether it
can record the job here (client installed, server reachable, key readable) is checked first by
llm_launch.launcher.tracking_checks, the same checks the launcher runs at plan time for jobs that run here.
llm_launch.train.metrics.MetricsLog, which both training backends write through, calls them: every logged
record goes to every tracker, and the run summary (metrics.json) ends each run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from llm_launch.launcher.config.schema import JobConfig, TrackingBackend
from llm_launch.launcher.tracking_checks import CHECKS, tracking_problems


class Tracker(Protocol):
    def log(self, record: dict, step: int) -> None:
        """One metrics record (numbers only) at a step."""

    def finish(self, summary: dict | None) -> None:
        """Record the run's summary (metrics.json), when it has one, and close the run."""


def _starts() -> dict[TrackingBackend, Callable[[JobConfig, dict, Path], Tracker]]:
    from llm_launch.train.tracking import mlflow_tracker, tensorboard_tracker, wandb_tracker

    return {TrackingBackend.tensorboard: tensorboard_tracker.start, TrackingBackend.mlflow: mlflow_tracker.start,
            TrackingBackend.wandb: wandb_tracker.start}


TRACKERS = _starts


def start_trackers(job: JobConfig, plan: dict, out_dir: Path, *, open_runs: bool) -> list[Tracker]:
    """Check every enabled backend, then open its run; a problem raises JobError (tracking.required) or is
    printed as a warning and that backend is left out. Called on every rank so they stop together; only the
    rank that writes metrics (open_runs) opens runs and prints warnings."""
    from llm_launch.train.errors import JobError

    problems = tracking_problems(job)
    if problems and job.tracking.required:
        key, message = problems[0]
        raise JobError(f"{key}: {message} (or set tracking.required=false to train without it)")
    if not open_runs:
        return []
    for key, message in problems:
        print(f"warning: {key}: {message}; training without it (tracking.required=false)", flush=True)
    skipped = {key for key, _ in problems}
    trackers = []
    for name in dict.fromkeys(job.tracking.backends):
        backend = TrackingBackend(name)
        if CHECKS[backend][0] not in skipped:
            trackers.append(TRACKERS()[backend](job, plan, out_dir))
    return trackers


def numbers(record: dict) -> dict[str, float]:
    """The numeric fields of a record, less its step (what trackers plot)."""
    return {k: float(v) for k, v in record.items()
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}


def job_dict(job: JobConfig) -> dict:
    """The resolved job as plain data (what job.yaml holds)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.structured(job), enum_to_str=True)
