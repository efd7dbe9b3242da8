"""The tasks a job can run and the module torchrun starts for each, in one table.

Every renderer (local, SageMaker, EKS, Slurm) takes the entrypoint from here, and the schema's
`task` choices are this table's keys, so adding a task is one row.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    """One kind of job."""

    name: str
    """Value of the job's `task`."""
    entrypoint: str
    """Python module started with `python -m <entrypoint> --job job.yaml` under torchrun."""
    trains_model: bool
    """Whether the model, parallel layout, batch and memory apply (a smoke test or data preparation has none)."""
    compiles: bool
    """Whether it runs model steps that Neuron compiles, so that neuron.precompile may trace them first."""
    sections: tuple[str, ...] = ()
    """Job sections it reads besides the shared ones (instance, cluster, trainer); only these are checked."""
    backends: tuple[str, ...] = ("torch", "nxd")
    """Training engines that run it (llm_launch.launcher.devices.engine_of, llm_launch.train.backend.BACKENDS); others are
    refused at plan time."""


MODEL_SECTIONS = ("model", "parallelism", "training", "neuron")


TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task("cpt", "llm_launch.train.cpt", trains_model=True, compiles=True, sections=MODEL_SECTIONS),
        Task("sft", "llm_launch.train.sft", trains_model=True, compiles=True, sections=MODEL_SECTIONS),
        Task("dpo", "llm_launch.train.dpo", trains_model=True, compiles=False, sections=MODEL_SECTIONS, backends=("torch",)),
        Task("eval", "llm_launch.train.eval", trains_model=True, compiles=False, sections=MODEL_SECTIONS),
        Task("smoke", "llm_launch.train.smoke", trains_model=False, compiles=False),
        Task("prepare", "llm_launch.dataprep.prepare", trains_model=False, compiles=False, sections=("data_prep",)),
    )
}


def entrypoint(task: str) -> str:
    """The module that runs the job's task."""
    return TASKS[task].entrypoint
