"""training.checkpoint.every_n_steps=auto: after warm-up the interval follows docs/training.md's formula
N = max(1, floor((60 M - s) / t)), timed on a fake clock (train/cadence.py)."""

import pytest
from llm_launch.train.cadence import WARMUP_STEPS, Cadence, auto_interval


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _train(cadence: Cadence, clock: FakeClock, step_times: list[float], save_s: float, start: int = 0,
           max_steps: int = 10_000) -> list[int]:
    """Runs the loop's calls; returns the steps it saved after."""
    saved = []
    for done, seconds in enumerate(step_times, start=start + 1):
        cadence.step_begins()
        clock.now += seconds
        cadence.step_ends()
        if cadence.due(done, max_steps):
            cadence.save_begins()
            clock.now += save_s
            cadence.save_ends(done)
            saved.append(done)
    return saved


def test_the_interval_follows_the_formula_after_warm_up():
    clock = FakeClock()
    cadence = Cadence(0, auto=True, max_lost_minutes=10, clock=clock)
    times = [30.0] + [2.0] * (WARMUP_STEPS - 1) + [2.0] * 700  # the first step warms up: left out of the median
    saved = _train(cadence, clock, times, save_s=40.0)
    every = (60 * 10 - 40) // 2  # 280
    assert cadence.measured == {"checkpoint_every_n_steps": every, "measured_step_s": 2.0, "measured_save_s": 40.0}
    assert saved == [WARMUP_STEPS, WARMUP_STEPS + every, WARMUP_STEPS + 2 * every]


@pytest.mark.parametrize("step_s, save_s, minutes, expected", [
    (2.0, 40.0, 10, 280),
    (0.5, 0.0, 1, 120),
    (120.0, 30.0, 1, 1),    # a step longer than the budget: save after every step
    (1.0, 600.0, 5, 1),     # a save longer than the budget: still every step, never 0
])
def test_auto_interval(step_s, save_s, minutes, expected):
    assert auto_interval(step_s, save_s, minutes) == expected


def test_a_fixed_interval_counts_from_step_zero_and_always_saves_the_last_step():
    clock = FakeClock()
    cadence = Cadence(4, auto=False, max_lost_minutes=30, clock=clock)
    assert _train(cadence, clock, [1.0] * 10, save_s=1.0, start=2, max_steps=12) == [4, 8, 12]
    assert cadence.measured is None
