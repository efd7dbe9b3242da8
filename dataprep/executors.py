"""Running the stages of data preparation on DataTrove's LocalPipelineExecutor, on one host or several.

Every cluster kind runs the same thing: each host (a local machine, a Slurm node, a SageMaker instance,
an EKS pod) runs its contiguous share of each stage's tasks with LocalPipelineExecutor (local_tasks and
local_rank_offset from the host's index; `workers` processes at a time), then all hosts meet at a barrier
before the next stage starts, since a stage reads what every task of the one before wrote. DataTrove marks
each finished task under <work>/logs/<stage>/completions/, so a rerun skips finished tasks of every stage
(https://github.com/huggingface/datatrove/blob/main/src/datatrove/executor/local.py).

Tasks run on our own loop over DataTrove's per-task entry point (PipelineExecutor._run_for_rank: logging,
statistics, completion marker) instead of LocalPipelineExecutor.run: that one maps tasks over a
multiprocess.Pool, which waits forever for the result of a task whose worker process died (killed, or out of
memory: https://github.com/python/cpython/pull/10441, never merged), so one killed worker hung the whole job.
concurrent.futures.ProcessPoolExecutor notices a dead worker (BrokenProcessPool,
https://docs.python.org/3/library/concurrent.futures.html#concurrent.futures.process.BrokenProcessPool): the
stage then fails with one line and a rerun redoes only the unfinished tasks. It also needs no Manager process
per stage (DataTrove's ranks queue).

Slurm runs this too, as one sbatch job (the launcher's Slurm script, one srun task per node) rather than
DataTrove's SlurmPipelineExecutor: see docs/data.md, "Executors", for why.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from copy import deepcopy
from dataclasses import dataclass, field

from datatrove.executor import LocalPipelineExecutor
from datatrove.utils.stats import PipelineStats


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


TASK_LOCAL_RANK = 1
"""The local rank every task runs as. DataTrove uses it only for logging: local rank 0 prints its task's INFO
lines to the console (the pipeline, every task's statistics), any other only its errors. The console keeps our
progress lines and the errors; every task's whole log stays in <logs>/<stage>/logs/task_<rank>.log and the
statistics in <logs>/<stage>/stats.json."""

_EXECUTOR: LocalPipelineExecutor | None = None
"""The stage's executor in a pool worker (set by the pool's initializer: inherited under fork, pickled else)."""


def _init_worker(ex: LocalPipelineExecutor) -> None:
    global _EXECUTOR
    _EXECUTOR = ex


def _run_task(rank: int, local_rank: int) -> PipelineStats:
    assert _EXECUTOR is not None
    return _EXECUTOR._run_for_rank(rank, local_rank)


def run_tasks(ex: LocalPipelineExecutor, stage: str, in_process: bool = False) -> None:
    """Run this host's unfinished tasks of a stage on ex.workers processes, or one after the other in this process
    (in_process: data_prep.workers=1, as DataTrove does); raise StageFailed with one line when a task raises or a
    worker process dies. A stage of one task runs in a worker process too, so what it holds (the MinHash cluster
    stage's union-find) is freed when the stage ends instead of staying in this process."""
    ranks = ex.get_incomplete_ranks(range(ex.local_rank_offset, ex.local_rank_offset + ex.local_tasks))
    if not ranks:
        return
    ex.save_executor_as_json()
    stats: list[PipelineStats] = []
    try:
        if in_process:
            pipeline = ex.pipeline
            for rank in ranks:
                ex.pipeline = deepcopy(pipeline)
                stats.append(ex._run_for_rank(rank, TASK_LOCAL_RANK))
        else:
            context = multiprocessing.get_context(ex.start_method)
            with ProcessPoolExecutor(ex.workers, mp_context=context, initializer=_init_worker, initargs=(ex,)) as pool:
                futures = [pool.submit(_run_task, rank, TASK_LOCAL_RANK) for rank in ranks]
                done, _ = wait(futures, return_when=FIRST_EXCEPTION)
                failed = [f for f in futures if f.done() and f.exception() is not None]
                if failed:
                    for future in futures:
                        future.cancel()
                    raise failed[0].exception()
                stats = [f.result() for f in futures]
    except BrokenProcessPool:
        raise StageFailed(f"stage {stage}: a worker process died (killed, or out of memory); the tasks it finished "
                          f"are kept: run the job again to redo only the others (logs in {ex.logging_dir.path}/logs)") from None
    except Exception as exc:  # noqa: BLE001 - any task error ends the stage with one line; its traceback is in the log
        raise StageFailed(f"stage {stage}: a task failed: {type(exc).__name__}: {exc} (logs in "
                          f"{ex.logging_dir.path}/logs); run the job again to redo the unfinished tasks") from None
    with ex.logging_dir.open("stats.json", "wt") as f:
        sum(stats, start=PipelineStats()).save_to_disk(f)


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
            run_tasks(executor(stage, tasks, hosts, workers, logs), stage.name, in_process=workers == 1)
            progress(f"stage {stage.name}: done in {time.perf_counter() - started:.1f} s")
        hosts.barrier()
        check = LocalPipelineExecutor(pipeline=[], tasks=tasks, logging_dir=f"{logs}/{stage.name}")
        missing = check.get_incomplete_ranks()
        if missing:
            raise StageFailed(f"stage {stage.name}: tasks {missing[:10]} of {tasks} did not complete (logs in "
                              f"{logs}/{stage.name}/logs); run the job again to redo only those")
