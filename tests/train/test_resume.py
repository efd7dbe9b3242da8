"""Interrupted runs lose nothing: SIGTERM checkpoints and stops, a rerun resumes exactly (also after SIGKILL,
from the last complete checkpoint),
and a different layout (another data-parallel degree) resumes the same checkpoint.

Warm-up (10 steps in the tiny recipe) covers every step these runs take, so the learning
rate at a step does not depend on max_steps and runs of different lengths compare step
for step.
"""

import json
import signal
import subprocess
import time

import pytest

RUN = ["training.max_steps=6", "training.checkpoint.every_n_steps=0"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, launch, records):
    out = tmp_path_factory.mktemp("reference")
    result = launch(out, *RUN)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return records(out)


def _wait_for_step(out, step, proc, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before it could be interrupted"
        metrics = out / "metrics.jsonl"
        if metrics.is_file() and any(json.loads(line).get("step", 0) >= step and "loss" in line
                                     for line in metrics.read_text().splitlines()):
            return
        time.sleep(0.2)
    raise AssertionError(f"step {step} never logged")


def test_sigterm_checkpoints_and_the_rerun_continues_bit_for_bit(reference, tmp_path, command, launch, records):
    proc = subprocess.Popen(command(tmp_path, *RUN), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for_step(tmp_path, 2, proc)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1, output[-3000:]
    assert "stopped by SIGTERM after step" in output
    assert not (tmp_path / "COMPLETE").exists()
    saved = (tmp_path / "checkpoints" / "latest").read_text().strip()
    stopped_at = int(saved.removeprefix("step_"))
    assert 2 <= stopped_at < 6

    resumed = launch(tmp_path, *RUN)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"resumed from {tmp_path / 'checkpoints' / saved}" in resumed.stdout
    losses = {step: r["loss"] for step, r in records(tmp_path).items()}
    assert losses == {step: r["loss"] for step, r in reference.items()}  # bit for bit on CPU


def test_resume_with_another_layout_and_data_parallel_degree(reference, tmp_path, launch, records):
    first = launch(tmp_path, "training.max_steps=3", "training.checkpoint.every_n_steps=0",
                       "parallelism.tp=2")  # dp 1
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    second = launch(tmp_path, *RUN, "parallelism=fsdp")  # dp 2, sharded
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "resumed from" in second.stdout
    curve = records(tmp_path)
    for step in range(1, 7):
        assert curve[step]["loss"] == pytest.approx(reference[step]["loss"], rel=1e-5), step


def test_killed_outright_the_rerun_resumes_from_the_last_complete_checkpoint(reference, tmp_path, command, launch,
                                                                             records):
    import os

    proc = subprocess.Popen(command(tmp_path, *RUN[:1], "training.checkpoint.every_n_steps=2"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    _wait_for_step(tmp_path, 3, proc)
    os.killpg(proc.pid, signal.SIGKILL)  # no handler runs: the node is gone
    proc.wait(timeout=60)
    assert not (tmp_path / "COMPLETE").exists()

    resumed = launch(tmp_path, *RUN[:1], "training.checkpoint.every_n_steps=2")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout
    losses = {step: r["loss"] for step, r in records(tmp_path).items()}  # a step logged twice keeps the rerun's
    assert losses == {step: r["loss"] for step, r in reference.items()}
