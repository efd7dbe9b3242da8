"""Experiment trackers, one module per backend, registered in TRACKERS.

Each backend offers problem(job) -> str | None, which imports nothing heavy (the client is looked up,
not imported) and reaches its server with a short timeout, and start(job, plan, out_dir) -> Tracker on the
rank that writes metrics. llm_launch.train.metrics.MetricsLog, which both training backends write through, calls
them: every logged record goes to every tracker, and the run summary (metrics.json) ends each run.
The launcher runs the same problem() checks at plan time for jobs that run here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from llm_launch.launcher.config.schema import JobConfig, TrackingBackend


class Tracker(Protocol):
    def log(self, record: dict, step: int) -> None:
        """One metrics record (numbers only) at a step."""

    def finish(self, summary: dict | None) -> None:
        """Record the run's summary (metrics.json), when it has one, and close the run."""


@dataclass(frozen=True)
class Backend:
    problem: Callable[[JobConfig], str | None]
    """Why the backend cannot record this job here (a missing client, an unreachable server), or None."""
    start: Callable[[JobConfig, dict, Path], Tracker]
    """Open the run: record the resolved job and the plan."""
    key: str
    """The config key a problem names."""


def _backends() -> dict[TrackingBackend, Backend]:
    from llm_launch.train.tracking import mlflow_tracker, tensorboard_tracker, wandb_tracker

    return {
        TrackingBackend.tensorboard: Backend(tensorboard_tracker.problem, tensorboard_tracker.start,
                                             "tracking.backends"),
        TrackingBackend.mlflow: Backend(mlflow_tracker.problem, mlflow_tracker.start, "tracking.mlflow.tracking_uri"),
        TrackingBackend.wandb: Backend(wandb_tracker.problem, wandb_tracker.start, "tracking.wandb"),
    }


TRACKERS = _backends


def tracking_problems(job: JobConfig) -> list[tuple[str, str]]:
    """(key, message) of each enabled backend that cannot record this job, in config order."""
    found = []
    for name in dict.fromkeys(job.tracking.backends):
        backend = TRACKERS()[TrackingBackend(name)]
        message = backend.problem(job)
        if message:
            found.append((backend.key, message))
    return found


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
        backend = TRACKERS()[TrackingBackend(name)]
        if backend.key not in skipped:
            trackers.append(backend.start(job, plan, out_dir))
    return trackers


def numbers(record: dict) -> dict[str, float]:
    """The numeric fields of a record, less its step (what trackers plot)."""
    return {k: float(v) for k, v in record.items()
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}


def redact_uri(uri: str) -> str:
    """A URI without the user:password part of its host, for messages."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if parts.username or parts.password:
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit(parts._replace(netloc=netloc))
    return uri


def reach(url: str, timeout_s: float = 5.0) -> str | None:
    """None when an HTTP GET of url gets any answer, else why not (one line)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout_s):
            return None
    except urllib.error.HTTPError:
        return None  # it answered
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return str(reason).strip().splitlines()[0] if str(reason).strip() else type(exc).__name__


def job_dict(job: JobConfig) -> dict:
    """The resolved job as plain data (what job.yaml holds)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.structured(job), enum_to_str=True)
