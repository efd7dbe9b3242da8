"""The training.watchdog section: hang and straggler detection (train/watchdog.py, docs/training.md)."""

from __future__ import annotations

from dataclasses import dataclass

from llm_launch.launcher.config.checks import Checks, Section


@dataclass
class WatchdogConfig(Section):
    """Hang and straggler detection while training steps run."""

    enabled: bool = True
    """Watch every rank's progress; a hang dumps every rank's stacks and ends the job with exit code 75."""
    hang_timeout_s: float | None = None
    """Seconds a step may take before the job counts as hung; None: hang_multiple x the median step time,
    at least hang_floor_s (armed once the run's first step has finished)."""
    hang_multiple: float = 10.0
    """With hang_timeout_s=None: the timeout as a multiple of the median step time."""
    hang_floor_s: float = 300.0
    """With hang_timeout_s=None: the shortest timeout, in seconds."""
    straggler_factor: float = 1.5
    """A rank whose time to reach the end-of-step collective exceeds the median rank's by this factor is slow."""
    straggler_steps: int = 5
    """Consecutive slow steps before a rank is named as a straggler in the log and metrics."""

    def own_problems(self, checks: Checks) -> None:
        checks.positive(hang_timeout_s=self.hang_timeout_s, hang_multiple=self.hang_multiple,
                        hang_floor_s=self.hang_floor_s)
        checks.at_least(1, straggler_steps=self.straggler_steps)
        if not self.straggler_factor > 1:
            checks.error("straggler_factor", f"must be above 1, got {self.straggler_factor}; e.g. 1.5")
