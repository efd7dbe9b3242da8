"""The tasks a job can run and the module torchrun starts for each, in one table.

Every renderer (local, SageMaker, EKS, Slurm) takes the entrypoint from here, so adding a
task is one row.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    """One kind of job."""

    name: str
    """Value of training.task."""
    entrypoint: str
    """Python module started with `python -m <entrypoint> --job job.yaml` under torchrun."""
    trains_model: bool
    """Whether model, batch and memory checks apply (a smoke test or data preparation has none)."""


TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task("cpt", "train.cpt", trains_model=True),
        Task("sft", "train.sft", trains_model=True),
        Task("dpo", "train.dpo", trains_model=True),
        Task("eval", "train.eval", trains_model=True),
        Task("smoke", "train.smoke", trains_model=False),
        Task("prepare", "train.prepare", trains_model=False),
    )
}


def entrypoint(task: str) -> str:
    """The module that runs training.task."""
    return TASKS[task].entrypoint
