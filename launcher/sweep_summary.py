"""The table that ends a sweep (llm-launch -m ...): one row per job, the overrides that vary across the jobs, whether
the job fits, its step time, tokens per second and cost, from each job's plan.

A Hydra callback (conf/job.yaml hydra.callbacks): each job's task function returns its Plan, which Hydra hands to
on_job_end in the job's JobReturn, and on_multirun_end prints the table once every job has run
(https://hydra.cc/docs/experimental/callbacks/). Jobs without a plan (status, logs, stop, suggest) add no row.
"""

from __future__ import annotations

from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback


def varying_keys(overrides: list[list[str]]) -> list[str]:
    """The override keys whose value is not the same in every job, in command-line order."""
    values: dict[str, set[str | None]] = {}
    for job in overrides:
        pairs = dict(o.split("=", 1) if "=" in o else (o, "") for o in job)
        for key in pairs:
            values.setdefault(key, set())
        for key in values:
            values[key].add(pairs.get(key))
    keys = [key for key, seen in values.items() if len(seen) > 1]
    return keys or list(values)


class SweepSummary(Callback):
    """Collects each job's plan under -m and prints one summary table at the end."""

    def __init__(self) -> None:
        self.rows: list[tuple[list[str], Any]] = []

    def on_multirun_start(self, config, **kwargs) -> None:
        self.rows = []

    def on_job_end(self, config, job_return: JobReturn, **kwargs) -> None:
        if job_return.status != JobStatus.COMPLETED or job_return.return_value is None:
            return  # a single run collects a row too, but only on_multirun_end prints
        self.rows.append((list(job_return.overrides or []), job_return.return_value))

    def on_multirun_end(self, config, **kwargs) -> None:
        if not self.rows:
            return
        from llm_launch.launcher.report import print_sweep

        print_sweep(self.rows)
