"""Failures cost little and say what happened, on real multi-process runs (system tier):
- async checkpoints stall the loop at most a quarter as long as sync ones, on the 33.6 M model (same losses);
- kill -9 while an async save is being written leaves `latest` on the previous complete checkpoint, and the
  rerun continues bit for bit;
- a rank hung before a collective: every rank's stack in the log, one line naming the rank and step, exit 75;
- a slow rank is named as a straggler in the log and metrics;
- progress.json and metrics.json account for the time in steps, saves and redone steps.
Faults are injected with LLM_LAUNCH_TEST_FAULTS (train/faults.py); everything else is the real job.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from llm_launch.launcher.progress import HANG_EXIT_CODE, read_progress_file

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

pytestmark = pytest.mark.system

RUN = ["training.max_steps=8", "training.checkpoint.every_n_steps=2", "training.checkpoint.mode=async"]


def _wait_for(predicate, proc, what, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the run ended before {what}"
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"never saw {what}")


def _logged_step(out, step):
    metrics = out / "metrics.jsonl"
    return metrics.is_file() and any(json.loads(line).get("step", 0) >= step and "loss" in line
                                     for line in metrics.read_text().splitlines())


def test_async_saves_stall_the_loop_at_most_a_quarter_of_sync_ones():
    from async_checkpoint import compare

    result = compare(steps=7, every=2, nproc=1, seq_len=128)  # saves at 2, 4, 6 compared; 7 is the last
    sync, asynchronous = result["sync"], result["async"]
    assert len(sync["stalls_s"]) == len(asynchronous["stalls_s"]) == 3
    assert result["ratio"] <= 0.25, (sync["stalls_s"], asynchronous["stalls_s"])
    assert sync["losses"] == asynchronous["losses"]  # the same training, bit for bit


def test_kill_9_during_an_async_write_keeps_latest_and_the_rerun_is_bit_exact(tmp_path, command, launch, records):
    reference = tmp_path / "reference"
    done = launch(reference, *RUN)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    out = tmp_path / "killed"
    env = dict(os.environ, LLM_LAUNCH_TEST_FAULTS="checkpoint_write_delay=600@4")  # step 4's save never completes
    proc = subprocess.Popen(command(out, *RUN), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, env=env)
    checkpoints = out / "checkpoints"
    in_flight = checkpoints / "step_00000004.tmp"
    _wait_for(lambda: _logged_step(out, 6) and any(in_flight.glob("*.distcp")), proc,
              "step 6 trained while step 4's save was in flight")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    time.sleep(1.0)  # the ranks die with llm-launch (train/lifeline.py)
    assert (checkpoints / "latest").read_text().strip() == "step_00000002"
    assert not (checkpoints / "step_00000004").exists()

    resumed = launch(out, *RUN)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"resumed from {checkpoints / 'step_00000002'}" in resumed.stdout
    losses = {step: r["loss"] for step, r in records(out).items()}
    assert losses == {step: r["loss"] for step, r in records(reference).items()}  # bit for bit on CPU

    progress = read_progress_file(out / "progress.json")
    assert progress.step == 8 and progress.restarts == 1
    assert progress.redone_steps >= 4  # steps 3.. trained again (the killed run logged at least step 6)
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["restarts"] == 1 and summary["redone_steps"] == progress.redone_steps
    assert 0 < summary["goodput"] < 1 and summary["checkpoint_s"] > 0 and summary["productive_s"] > 0


@pytest.mark.parametrize("world", [
    (),
    # three ranks wait inside the collective, and every one's stack is in the log
    ("instance.accelerators_per_node=4", "training.micro_batch_size=2"),
], ids=["world2", "world4"])
def test_a_hung_rank_dumps_every_stack_names_the_rank_and_step_and_exits_75(tmp_path, command, world):
    timeout_s = 10
    env = dict(os.environ, LLM_LAUNCH_TEST_FAULTS="hang=1@3")
    proc = subprocess.Popen(command(tmp_path, "training.max_steps=6", "training.checkpoint.every_n_steps=0",
                                    f"training.watchdog.hang_timeout_s={timeout_s}", *world),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    log = tmp_path / "train.log"
    _wait_for(lambda: log.is_file() and "test fault: rank 1 hangs at step 3" in log.read_text(), proc, "the hang")
    hung_at = time.monotonic()
    output, _ = proc.communicate(timeout=timeout_s + 120)
    assert time.monotonic() - hung_at <= timeout_s + 30
    assert proc.returncode == HANG_EXIT_CODE, output[-3000:]
    text = log.read_text()
    for rank in range(4 if world else 2):
        assert f"watchdog: rank {rank}: step 3 did not finish within {timeout_s} s; Python stacks of rank {rank}:" in text
    assert 'in hang_here' in text  # rank 1's main thread, where it stopped
    assert 'in all_reduce' in text  # rank 0's, waiting inside the collective
    (line,) = [x for x in text.splitlines() if x.startswith("hang: ")]
    assert line.startswith(f"hang: step 3 did not finish within {timeout_s} s; ranks [1] did not arrive at its "
                           "end-of-step collective")
    assert f"exiting with code {HANG_EXIT_CODE}" in line
    assert output.strip().splitlines()[-1] == (
        f"llm-launch: step 3 hung (ranks [1] never arrived; no step finished within {timeout_s} s); every rank's "
        f"stack is in {log}; run the same command again to resume")


def test_a_slow_rank_is_named_a_straggler(tmp_path, command, records):
    env_run = subprocess.run(command(tmp_path, "training.max_steps=5", "training.checkpoint.every_n_steps=0",
                                     "training.watchdog.straggler_steps=2"),
                             capture_output=True, text=True, timeout=600,
                             env=dict(os.environ, LLM_LAUNCH_TEST_FAULTS="slow=1:3"))
    assert env_run.returncode == 0, env_run.stdout[-3000:] + env_run.stderr[-3000:]
    named = [line for line in env_run.stdout.splitlines() if line.startswith("straggler: ")]
    assert len(named) == 1 and named[0].startswith("straggler: rank(s) [1] reached the end of step 2 ")
    assert records(tmp_path)[2]["straggler_ranks"] == [1]
    assert read_progress_file(tmp_path / "progress.json").stragglers == [1]
