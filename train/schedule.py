"""Learning-rate schedule: linear warm-up to the peak, then cosine, linear or constant decay."""

from __future__ import annotations

import math

import torch
from llm_launch.launcher.config.schema import ScheduleConfig


def lr_factor(step: int, schedule: ScheduleConfig, max_steps: int) -> float:
    """Multiplier of the peak learning rate at an optimizer step (0-based)."""
    if step < schedule.warmup_steps:
        return (step + 1) / schedule.warmup_steps
    if schedule.name == "constant":
        return 1.0
    progress = min(1.0, (step - schedule.warmup_steps) / max(1, max_steps - schedule.warmup_steps))
    floor = schedule.min_lr_ratio
    if schedule.name == "linear":
        return floor + (1 - floor) * (1 - progress)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, schedule: ScheduleConfig, max_steps: int):
    """A LambdaLR following lr_factor."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, schedule, max_steps))
