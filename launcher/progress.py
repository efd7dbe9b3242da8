"""A job's progress, goodput and ETA: progress.json, written by the training loop (rank 0, atomically, at every
logged step and at the end of a run) and read by action=status.

progress.json sits in the job's output_dir and, where the checkpoint dir lies outside it, as
.llm-launch-progress.json beside the checkpoints (SageMaker syncs /opt/ml/checkpoints to
cluster.sagemaker.s3_checkpoint_uri while the job runs, so action=status reads it there).
It carries the job's totals over all its runs:
- productive_s: time in training steps whose result was kept;
- checkpoint_s: time the loop stood still for checkpoints (sync saves, async staging and waits);
- eval_s: time in validation;
- restarts: runs after the first (a resume after a failure, a stop, a requeue);
- redone_steps / redone_s: steps trained again because the run they were trained in ended after its last
  complete checkpoint (estimated at that run's median step time);
- goodput: productive_s over the wall time of every run.
The ETA is the remaining steps at the current run's pace (its wall time per step, saves and evaluation included).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

PROGRESS_FILE = "progress.json"
CHECKPOINT_SIDE_PROGRESS = ".llm-launch-progress.json"
"""The copy beside the checkpoints (a checkpoint dir outside output_dir: SageMaker's /opt/ml/checkpoints), named
out of the way of the checkpoints themselves."""
HANG_RECORD = "hang/hang.json"
"""Under output_dir: what the training watchdog found when a step hung (train/watchdog.py)."""
HANG_EXIT_CODE = 75
"""The exit code of a job whose step hung (every rank's, and llm-launch's for a local run): EX_TEMPFAIL of
sysexits.h, a failure a retry may cure."""


@dataclass
class Progress:
    """The job's progress record (progress.json)."""

    max_steps: int
    step: int = 0
    seconds_per_step: float | None = None
    """The current run's wall time per step, saves and evaluation included."""
    productive_s: float = 0.0
    checkpoint_s: float = 0.0
    eval_s: float = 0.0
    wall_s: float = 0.0
    """Wall time of every run, from its first step to its last report."""
    restarts: int = 0
    redone_steps: int = 0
    redone_s: float = 0.0
    median_step_s: float | None = None
    checkpoint_every_n_steps: int | None = None
    stragglers: list[int] = field(default_factory=list)
    updated: float = 0.0
    """Unix time of the last report."""

    @property
    def goodput(self) -> float | None:
        return self.productive_s / self.wall_s if self.wall_s > 0 else None

    @property
    def eta_s(self) -> float | None:
        if self.seconds_per_step is None:
            return None
        return max(0, self.max_steps - self.step) * self.seconds_per_step

    def to_dict(self) -> dict:
        return {**asdict(self), "goodput": self.goodput, "eta_s": self.eta_s}

    @classmethod
    def from_dict(cls, data: dict) -> Progress:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def read_progress(text: str | None) -> Progress | None:
    """A progress.json's content, or None when there is none or it cannot be read."""
    if not text:
        return None
    try:
        return Progress.from_dict(json.loads(text))
    except (ValueError, TypeError):
        return None


def read_progress_file(path: Path) -> Progress | None:
    try:
        return read_progress(path.read_text(encoding="utf-8"))
    except OSError:
        return None


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def status_line(progress: Progress) -> str:
    """One line: step / max_steps, the pace, the ETA, goodput and what the rest of the time went to."""
    pace = f"{progress.seconds_per_step:.2f} s/step" if progress.seconds_per_step else "pace unknown"
    goodput = f"{progress.goodput:.0%}" if progress.goodput is not None else "unknown"
    done = progress.step >= progress.max_steps
    eta = "done" if done else f"ETA {_duration(progress.eta_s)}"
    text = (f"step {progress.step}/{progress.max_steps} ({progress.step / max(1, progress.max_steps):.0%}), {pace}, "
            f"{eta}; goodput {goodput} (training {_duration(progress.productive_s)}, checkpoints "
            f"{_duration(progress.checkpoint_s)}, evaluation {_duration(progress.eval_s)}, {progress.restarts} "
            f"restart(s), {progress.redone_steps} step(s) redone)")
    if progress.stragglers:
        text += f"; slow ranks: {progress.stragglers}"
    return text
