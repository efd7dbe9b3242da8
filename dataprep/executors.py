"""Running the stages of data preparation on DataTrove's LocalPipelineExecutor, on one host or several.

Every cluster kind runs the same thing: each host (a local machine, a Slurm node, a SageMaker instance,
an EKS pod) runs its contiguous share of each stage's tasks with LocalPipelineExecutor (local_tasks and
local_rank_offset from the host's index; `workers` processes at a time), then all hosts meet at a barrier
before the next stage starts, since a stage reads what every task of the one before wrote. DataTrove marks
each finished task under <work>/logs/<stage>/completions/, so a rerun skips finished tasks of every stage
(https://github.com/huggingface/datatrove/blob/main/src/datatrove/executor/local.py).

Slurm runs this too, as one sbatch job (the launcher's Slurm script, one srun task per node) rather than
DataTrove's SlurmPipelineExecutor: see docs/data.md, "Executors", for why.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from datatrove.executor import LocalPipelineExecutor


@dataclass
class Hosts:
    """This host's place among the hosts of a multi-host run and how to wait for the others."""

    index: int = 0
    count: int = 1
    works: bool = True
    """False for processes that only take part in the barriers (torchrun local ranks other than 0)."""
    barrier: Callable[[], None] = field(default=lambda: None)


@dataclass
class Stage:
    """One DataTrove pipeline run as `tasks` tasks (or, with pipeline None, a step run once on host 0)."""

    name: str
    tasks: int | Callable[[], int]
    """Number of tasks, or what computes it when the stage starts (from what earlier stages wrote)."""
    pipeline: Callable[[], list] | None
    """Builds the stage's steps (called when the stage starts, so it can read what earlier stages wrote)."""
    driver: Callable[[], None] | None = None
    """For a stage of no tasks: what host 0 runs (e.g. deciding the mix from every task's counts)."""


class StageFailed(RuntimeError):
    """A stage ended with tasks that did not complete."""


def host_share(tasks: int, hosts: Hosts) -> tuple[int, int]:
    """(local_tasks, local_rank_offset) of this host: contiguous runs, earlier hosts take the extra tasks."""
    per, extra = divmod(tasks, hosts.count)
    offset = hosts.index * per + min(hosts.index, extra)
    return per + (hosts.index < extra), offset


def start_method() -> str:
    """fork where the platform has it (workers start in milliseconds); DataTrove's default forkserver elsewhere."""
    return "fork" if "fork" in multiprocessing.get_all_start_methods() else "forkserver"


def executor(stage: Stage, tasks: int, hosts: Hosts, workers: int, logs: str) -> LocalPipelineExecutor:
    local_tasks, offset = host_share(tasks, hosts)
    return LocalPipelineExecutor(pipeline=stage.pipeline(), tasks=tasks, workers=max(1, min(workers, local_tasks)),
                                 logging_dir=f"{logs}/{stage.name}", local_tasks=local_tasks, local_rank_offset=offset,
                                 start_method=start_method())


def run_stages(stages: list[Stage], hosts: Hosts, workers: int, logs: str,
               progress: Callable[[str], None] = lambda _: None) -> None:
    """Run every stage in order on this host's share of tasks, with a barrier after each."""
    for stage in stages:
        if stage.pipeline is None:
            if hosts.index == 0 and hosts.works and stage.driver is not None:
                stage.driver()
            hosts.barrier()
            continue
        tasks = stage.tasks() if callable(stage.tasks) else stage.tasks
        local_tasks, offset = host_share(tasks, hosts)
        if hosts.works and local_tasks:
            started = time.perf_counter()
            progress(f"stage {stage.name}: tasks {offset}..{offset + local_tasks - 1} of {tasks} on this host")
            executor(stage, tasks, hosts, workers, logs).run()
            progress(f"stage {stage.name}: done in {time.perf_counter() - started:.1f} s")
        hosts.barrier()
        check = LocalPipelineExecutor(pipeline=[], tasks=tasks, logging_dir=f"{logs}/{stage.name}")
        missing = check.get_incomplete_ranks()
        if missing:
            raise StageFailed(f"stage {stage.name}: tasks {missing[:10]} of {tasks} did not complete (logs in "
                              f"{logs}/{stage.name}/logs); run the job again to redo only those")
