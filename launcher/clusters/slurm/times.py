"""Slurm time strings (sbatch --time, a partition's MaxTime) as seconds, and back.

Formats (https://slurm.schedmd.com/sbatch.html#OPT_time): "minutes", "minutes:seconds",
"hours:minutes:seconds", "days-hours", "days-hours:minutes", "days-hours:minutes:seconds";
"UNLIMITED" and "INFINITE" mean no limit.
"""

from __future__ import annotations

import re

SLURM_TIME = re.compile(r"(\d+-)?\d+(:\d{1,2}){0,2}|UNLIMITED|INFINITE")
UNLIMITED = ("UNLIMITED", "INFINITE")


def seconds_of(value: str) -> int | None:
    """Seconds of a Slurm time string; None for no limit. ValueError when it is not one."""
    value = value.strip()
    if not SLURM_TIME.fullmatch(value):
        raise ValueError(f"{value!r} is not a Slurm time")
    if value in UNLIMITED:
        return None
    days, _, clock = value.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    if days:  # days-hours[:minutes[:seconds]]
        hours, minutes, seconds = (parts + [0, 0])[:3]
        return ((int(days) * 24 + hours) * 60 + minutes) * 60 + seconds
    if len(parts) == 1:  # minutes
        return parts[0] * 60
    if len(parts) == 2:  # minutes:seconds
        return parts[0] * 60 + parts[1]
    return (parts[0] * 60 + parts[1]) * 60 + parts[2]


def slurm_time(seconds: int) -> str:
    """[days-]hours:minutes:seconds, as Slurm prints it."""
    days, rest = divmod(seconds, 86400)
    clock = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}-{clock}" if days else clock
