"""A stop (SIGTERM or Ctrl-C to llm-launch) at any moment from submit to the first step ends in the documented stop.

Documented (docs/training.md, launcher/stop.py): before the job's processes are started, llm-launch ends at once,
exit 1, "stopped by signal N before the job started; nothing was trained". Once they may start, every rank, running
or started later by torchrun, stops after the step in progress or its first step with a checkpoint of that
step, exit 1, "stopped by signal N; its checkpoint is .../step_00000001". Either way no step beyond that one
trains, nothing keeps running, and the last line is llm-launch's. The job asks for 200 steps, so a stop that is
lost shows as a run still training when the test gives up.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from llm_launch.launcher.processes import child_pids
from llm_launch.launcher.stop import STOP_FILE

RUN = ["training.max_steps=200", "training.checkpoint.every_n_steps=0"]
MOMENTS = ["planning", "starting", "torchrun-starting", "ranks-started", "before-first-step"]
"""From the first line of the plan to the line rank 0 prints once its data is open, just before the first step."""


class Output:
    """The command's stdout, read on a thread as it comes."""

    def __init__(self, proc: subprocess.Popen):
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc) -> None:
        for line in proc.stdout:
            self.lines.append(line)

    def has(self, text: str) -> bool:
        return any(text in line for line in self.lines)


def _ranks(proc: subprocess.Popen) -> list[int]:
    return [rank for torchrun in child_pids(proc.pid) for rank in child_pids(torchrun)]


def _wait_for(moment: str, proc: subprocess.Popen, output: Output, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    reached = {"planning": lambda: bool(output.lines),
               "starting": lambda: output.has("llm-launch: starting"),
               "torchrun-starting": lambda: output.has("llm-launch: starting"),
               "ranks-started": lambda: bool(_ranks(proc)),
               "before-first-step": lambda: output.has("fingerprint")}[moment]
    while not reached():
        assert proc.poll() is None and time.monotonic() < deadline, f"{moment} never came: {''.join(output.lines)}"
        time.sleep(0.005)
    if moment == "torchrun-starting":
        time.sleep(0.5)  # the moment: torchrun is starting its ranks


def _stop_at(moment: str, signum: int, out: Path, command) -> tuple[int, str, str]:
    proc = subprocess.Popen(command(out, *RUN), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    output = Output(proc)
    try:
        _wait_for(moment, proc, output)
        proc.send_signal(signum)
        stderr = proc.stderr.read()
        proc.wait(timeout=240)  # a lost stop trains on: 200 steps take far longer
    finally:
        proc.kill()
    output.thread.join(timeout=10)
    return proc.returncode, "".join(output.lines), stderr


def _trained_steps(out: Path) -> list[int]:
    metrics = out / "metrics.jsonl"
    records = [json.loads(line) for line in metrics.read_text().splitlines()] if metrics.is_file() else []
    return sorted(r["step"] for r in records if "loss" in r)


def check_documented_stop(moment: str, signum: int, out: Path, command) -> None:
    returncode, stdout, stderr = _stop_at(moment, signum, out, command)
    shown = f"{stdout[-3000:]}\n{stderr[-3000:]}"
    assert returncode == 1, shown
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"llm-launch: stopped by signal {signum}"), shown
    assert "Traceback" not in stdout + stderr and "SignalException" not in stdout + stderr, shown
    assert not (out / "COMPLETE").exists()
    assert not (out / STOP_FILE).exists()  # the request is spent with the run
    steps = _trained_steps(out)
    checkpoints = out / "checkpoints"
    if steps:  # the ranks saw the stop at their first step: that step, saved, and nothing more
        assert steps == [1], shown
        assert (checkpoints / "latest").read_text().strip() == "step_00000001"
        assert last == (f"llm-launch: stopped by signal {signum}; its checkpoint is {checkpoints / 'step_00000001'}; "
                        "run the same command again to resume"), shown
    else:  # stopped before any rank trained
        assert not list(checkpoints.glob("step_*")) if checkpoints.is_dir() else True
        assert last in (f"llm-launch: stopped by signal {signum} before the job started; nothing was trained",
                        f"llm-launch: stopped by signal {signum}; no checkpoint was saved (no step was trained); "
                        "run the same command again to resume"), shown
    if moment == "planning":
        assert last.endswith("before the job started; nothing was trained") and not (out / "train.log").exists()
    if moment in ("ranks-started", "before-first-step"):
        assert steps == [1], shown  # ranks were running: the documented stop is after their first step


@pytest.mark.parametrize(("moment", "signum"), [("planning", signal.SIGINT), ("torchrun-starting", signal.SIGTERM)],
                         ids=["ctrl-c-while-planning", "sigterm-while-torchrun-starts"])
def test_a_stop_before_the_first_step_ends_in_the_documented_stop(tmp_path, command, moment, signum):
    check_documented_stop(moment, signum, tmp_path, command)


@pytest.mark.system
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
@pytest.mark.parametrize("moment", MOMENTS)
def test_a_stop_at_every_moment_from_submit_to_the_first_step(tmp_path, command, moment, signum):
    check_documented_stop(moment, signum, tmp_path, command)
