"""The loop's account of where a job's time goes (launcher/progress.py's progress.json): kept by rank 0, carried over
from the job's earlier runs, written atomically at every logged step, after saves and at the end of a run."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from llm_launch.launcher.jobfile import write_text_atomic
from llm_launch.launcher.progress import CHECKPOINT_SIDE_PROGRESS, PROGRESS_FILE, Progress, read_progress_file

RECENT_STEPS = 50


class RunProgress:
    """Totals of the job so far, updated by this run."""

    def __init__(self, out_dir: Path, checkpoint_dir: str | None, max_steps: int, *, enabled: bool):
        self.enabled = enabled
        self.paths = [out_dir / PROGRESS_FILE]
        if checkpoint_dir and "://" not in checkpoint_dir and not Path(checkpoint_dir).resolve().is_relative_to(
                out_dir.resolve()):
            self.paths.append(Path(checkpoint_dir) / CHECKPOINT_SIDE_PROGRESS)  # synced to S3 on SageMaker
        previous = next((p for p in map(read_progress_file, self.paths) if p is not None), None)
        self.previous = previous
        self.progress = previous or Progress(max_steps=max_steps)
        self.progress.max_steps = max_steps
        self.recent: list[float] = []
        self.run_started = time.time()
        self.base_wall = self.progress.wall_s
        self.first_step = 0

    def start(self, start_step: int) -> None:
        """The run resumes at start_step: a restart when an earlier run reported, its unsaved steps redone."""
        p, self.first_step, self.run_started = self.progress, start_step, time.time()
        if self.previous is not None:
            p.restarts += 1
            lost = max(0, self.previous.step - start_step)
            lost_s = lost * (self.previous.median_step_s or 0.0)
            p.redone_steps += lost
            p.redone_s += lost_s
            p.productive_s = max(0.0, p.productive_s - lost_s)
        p.step = start_step

    def step(self, done: int, seconds: float) -> None:
        self.progress.step = done
        self.progress.productive_s += seconds
        self.recent = [*self.recent[-(RECENT_STEPS - 1):], seconds]

    def checkpoint(self, seconds: float) -> None:
        self.progress.checkpoint_s += seconds

    def evaluation(self, seconds: float) -> None:
        self.progress.eval_s += seconds

    def figures(self) -> dict:
        """The goodput figures for metrics.json and the trackers."""
        data = self.progress.to_dict()
        return {k: data[k] for k in ("productive_s", "checkpoint_s", "eval_s", "wall_s", "restarts", "redone_steps",
                                     "redone_s", "goodput")}

    def write(self) -> None:
        p, now = self.progress, time.time()
        p.wall_s = self.base_wall + (now - self.run_started)
        if p.step > self.first_step:
            p.seconds_per_step = (now - self.run_started) / (p.step - self.first_step)
        if self.recent:
            p.median_step_s = statistics.median(self.recent)
        p.updated = now
        if not self.enabled:
            return
        text = json.dumps(p.to_dict(), indent=2) + "\n"
        for path in self.paths:
            try:
                write_text_atomic(path, text)
            except OSError:
                pass  # a progress report must never stop training
