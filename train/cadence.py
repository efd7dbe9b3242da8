"""When the loop saves: every training.checkpoint.every_n_steps steps, or with every_n_steps=auto an interval
picked from measured step and save times so that a failure costs at most max_lost_minutes of training.

auto: the run trains WARMUP_STEPS steps, then saves (a probe) and measures
- t: the median step time of the steps since the run started, the first left out (it warms up);
- s: the probe save's time until the checkpoint is complete (sync: the loop's stall; async: until the background
  write is recorded, which the loop waits for this once).
A failure loses the steps since the last complete checkpoint plus the save in progress: at most N t + s with a
save every N steps. The interval is the largest N that keeps that within the budget M = max_lost_minutes:

    N = max(1, floor((60 M - s) / t))

counted from the probe step. A resumed run measures and picks again. The choice is logged and recorded in
metrics.jsonl (checkpoint_every_n_steps, with measured_step_s and measured_save_s).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable

WARMUP_STEPS = 5
"""Steps a run trains before the probe save of every_n_steps=auto."""


def auto_interval(step_s: float, save_s: float, max_lost_minutes: float) -> int:
    """The docs' formula: the most steps between saves that keep a failure's loss within the budget."""
    return max(1, math.floor((60 * max_lost_minutes - save_s) / max(step_s, 1e-9)))


class Cadence:
    """Decides after each step whether the loop saves, timing steps and saves on clock."""

    def __init__(self, every_n_steps: int, *, auto: bool, max_lost_minutes: float,
                 clock: Callable[[], float] = time.perf_counter):
        self.every, self.auto, self.budget, self.clock = every_n_steps, auto, max_lost_minutes, clock
        self.anchor = 0
        self.step_times: list[float] = []
        self._mark = 0.0
        self.measured: dict | None = None
        """With auto, once picked: {checkpoint_every_n_steps, measured_step_s, measured_save_s}."""

    @property
    def probing(self) -> bool:
        """auto, and no interval picked yet."""
        return self.auto and self.measured is None

    def step_begins(self) -> None:
        self._mark = self.clock()

    def step_ends(self) -> float:
        seconds = self.clock() - self._mark
        self.step_times.append(seconds)
        return seconds

    def due(self, done: int, max_steps: int) -> bool:
        """Whether the loop saves after step done."""
        if done == max_steps:
            return True
        if self.probing:
            return len(self.step_times) >= WARMUP_STEPS
        return bool(self.every) and (done - self.anchor) % self.every == 0

    def save_begins(self) -> None:
        self._mark = self.clock()

    def save_ends(self, done: int) -> dict | None:
        """After the save of step done is complete (for a probe); returns the pick when this save was the probe."""
        if not self.probing:
            return None
        save_s = self.clock() - self._mark
        step_s = statistics.median(self.step_times[1:] or self.step_times)
        self.every, self.anchor = auto_interval(step_s, save_s, self.budget), done
        self.measured = {"checkpoint_every_n_steps": self.every, "measured_step_s": step_s, "measured_save_s": save_s}
        return self.measured
