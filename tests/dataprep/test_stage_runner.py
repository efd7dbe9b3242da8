"""Running a stage's DataTrove tasks on a process pool (dataprep/executors.py): a worker process that dies
(here: SIGKILL, as the kernel's OOM killer sends) ends the stage with one line instead of hanging, as
DataTrove's LocalPipelineExecutor.run does (its multiprocess.Pool waits forever for the dead task), and a rerun
runs only the tasks that did not finish."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from datatrove.pipeline.base import PipelineStep
from llm_launch.dataprep.executors import Hosts, Stage, StageFailed, executor, run_stages, run_tasks


class Record(PipelineStep):
    """Writes <folder>/ran/<rank>.<pid>; in task `kill`, once task 0 has finished, kills its own process."""

    name = "record"

    def __init__(self, folder: str, kill: int | None = None, fail: int | None = None):
        super().__init__()
        self.folder, self.kill, self.fail = Path(folder), kill, fail

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        if rank == self.kill:
            deadline = time.monotonic() + 20
            while not (self.folder / "logs" / "stage" / "completions" / "00000").exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            os.kill(os.getpid(), signal.SIGKILL)
        if rank == self.fail:
            raise ValueError("bad record in task 2")
        (self.folder / "ran").mkdir(exist_ok=True)
        (self.folder / "ran" / f"{rank}.{os.getpid()}").touch()
        return
        yield


def stage_runner(tmp_path: Path, **kill) -> callable:
    def run() -> None:
        stage = Stage("stage", 4, lambda: [Record(str(tmp_path), **kill)])
        run_tasks(executor(stage, 4, Hosts(), 2, str(tmp_path / "logs")), stage.name)
    return run


def ran(tmp_path: Path) -> list[int]:
    return sorted(int(p.name.split(".")[0]) for p in (tmp_path / "ran").iterdir())


def test_a_killed_worker_fails_the_stage_with_one_line_and_the_rerun_runs_only_unfinished_tasks(tmp_path):
    outcome: list[BaseException] = []

    def target() -> None:
        try:
            stage_runner(tmp_path, kill=1)()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "the stage hung after its worker was killed"
    assert len(outcome) == 1 and isinstance(outcome[0], StageFailed), outcome
    message = str(outcome[0])
    assert "\n" not in message and message.startswith("stage stage: a worker process died")
    assert "run the job again" in message
    completions = tmp_path / "logs" / "stage" / "completions"
    finished = sorted(p.name for p in completions.iterdir())
    assert "00000" in finished and "00001" not in finished
    first = set(ran(tmp_path))
    assert 0 in first and 1 not in first

    stage_runner(tmp_path)()  # the rerun: nothing is killed
    again = ran(tmp_path)
    assert sorted(p.name for p in completions.iterdir()) == ["00000", "00001", "00002", "00003"]
    assert again.count(0) == 1 and sorted(set(again)) == [0, 1, 2, 3]  # task 0 was not run again
    assert (tmp_path / "logs" / "stage" / "stats.json").is_file()


def test_a_failing_task_fails_the_stage_with_its_error_in_one_line(tmp_path):
    with pytest.raises(StageFailed, match=r"^stage stage: a task failed: ValueError: bad record in task 2 \(logs in "):
        stage_runner(tmp_path, fail=2)()
    assert set(ran(tmp_path)) == {0, 1, 3}  # the other tasks finished


def test_run_stages_reports_tasks_left_unfinished_on_another_host(tmp_path):
    """Host 1 of 2 died before its share (tasks 2, 3) finished: host 0's check after the barrier names them."""
    stage = Stage("stage", 4, lambda: [Record(str(tmp_path))])
    with pytest.raises(StageFailed, match=r"stage stage: tasks \[2, 3\] of 4 did not complete"):
        run_stages([stage], Hosts(index=0, count=2), 2, str(tmp_path / "logs"))
    assert ran(tmp_path) == [0, 1]
