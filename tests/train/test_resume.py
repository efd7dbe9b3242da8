"""Interrupted runs lose nothing: SIGTERM checkpoints and stops, a rerun resumes exactly (also after SIGKILL,
from the last complete checkpoint, or the one before when that one is damaged), and a different layout
(another data-parallel degree) resumes the same checkpoint. A second run on a running job's folder is
refused; a killed llm-launch leaves no rank behind.

Warm-up (10 steps in the tiny recipe) covers every step these runs take, so the learning
rate at a step does not depend on max_steps and runs of different lengths compare step
for step.
"""

import json
import os
import signal
import subprocess
import time

import pytest
import torch

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


def test_a_second_run_on_a_running_jobs_folder_is_refused(tmp_path, command, launch):
    long_run = ["training.max_steps=500", "training.checkpoint.every_n_steps=0"]  # still training when checked
    proc = subprocess.Popen(command(tmp_path, *long_run), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for_step(tmp_path, 1, proc)
        second = launch(tmp_path, *long_run)
        assert second.returncode == 2, second.stdout[-3000:] + second.stderr[-3000:]
        (error,) = [line for line in second.stderr.splitlines() if line.startswith("  error:")]
        assert f"error: output_dir: {tmp_path} is in use by a running job (pid {proc.pid} on " in error
        assert proc.poll() is None, "the refused second run must leave the first one training"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=120)


def test_sigterm_checkpoints_and_the_rerun_continues_bit_for_bit(reference, tmp_path, command, launch, records):
    proc = subprocess.Popen(command(tmp_path, *RUN), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for_step(tmp_path, 2, proc)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1, output[-3000:]
    assert "stopped by SIGTERM after step" in output
    assert output.strip().splitlines()[-1].startswith("llm-launch: stopped by signal 15")  # the last line is ours
    assert "Traceback" not in output and "SignalException" not in output
    assert not (tmp_path / "COMPLETE").exists()
    saved = (tmp_path / "checkpoints" / "latest").read_text().strip()
    stopped_at = int(saved.removeprefix("step_"))
    assert 2 <= stopped_at < 6

    resumed = launch(tmp_path, *RUN)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"resumed from {tmp_path / 'checkpoints' / saved}" in resumed.stdout
    losses = {step: r["loss"] for step, r in records(tmp_path).items()}
    assert losses == {step: r["loss"] for step, r in reference.items()}  # bit for bit on CPU


@pytest.mark.system
def test_ctrl_c_is_named_as_ctrl_c_in_the_ranks_stop_lines(tmp_path, command):
    """Ctrl-C (SIGINT) reaches the ranks as the launcher's stop file, which holds the signal; their lines name it
    (they said SIGTERM for every stop, issue 23)."""
    proc = subprocess.Popen(command(tmp_path, "training.max_steps=500", "training.checkpoint.every_n_steps=0"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for_step(tmp_path, 1, proc)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1, output[-3000:]
    assert "Ctrl-C (SIGINT): stopping after step " in output and "stopped by Ctrl-C (SIGINT) after step " in output, \
        output[-3000:]
    assert "SIGTERM" not in output, output[-3000:]


def test_resume_with_another_layout_and_data_parallel_degree(reference, tmp_path, launch, records):
    first = launch(tmp_path, "training.max_steps=3", "training.checkpoint.every_n_steps=0",
                       "parallelism.tp=2")  # dp 1
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    second = launch(tmp_path, *RUN, "parallelism=fsdp")  # dp 2, sharded
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "resumed from" in second.stdout
    assert "written by world size 2 (tp 2, pp 1, dp 1), with world size 2 (tp 1, pp 1, dp 2): DCP reshards it" \
        in second.stdout  # a changed layout is fine, and said
    curve = records(tmp_path)
    for step in range(1, 7):
        assert curve[step]["loss"] == pytest.approx(reference[step]["loss"], rel=1e-5), step


def _job_processes(out) -> list[int]:
    """Live processes started for the job in out (torchrun and ranks name its job.yaml)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            cmdline = open(f"/proc/{entry}/cmdline", "rb").read()
        except OSError:
            continue
        if str(out / "job.yaml").encode() in cmdline and b"State:\tZ" not in _status(entry):
            found.append(int(entry))
    return found


def _status(pid) -> bytes:
    try:
        return open(f"/proc/{pid}/status", "rb").read()
    except OSError:
        return b"State:\tZ"


def _tree(out) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file()}


def test_killed_outright_the_rerun_resumes_from_the_last_intact_checkpoint(reference, tmp_path, command, launch,
                                                                           records):
    run = ["training.max_steps=8", "training.checkpoint.every_n_steps=2"]
    proc = subprocess.Popen(command(tmp_path, *run), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    _wait_for_step(tmp_path, 5, proc)
    assert _job_processes(tmp_path)
    os.killpg(proc.pid, signal.SIGKILL)  # llm-launch's process group only: the ranks are in sessions of their own
    killed = time.monotonic()
    proc.wait(timeout=60)
    while _job_processes(tmp_path) and time.monotonic() - killed < 2.0:
        time.sleep(0.05)
    assert _job_processes(tmp_path) == [], "a rank outlived llm-launch by more than 2 s"
    after_kill = _tree(tmp_path)
    time.sleep(1.0)
    assert _tree(tmp_path) == after_kill  # nothing was written after the kill
    assert not (tmp_path / "COMPLETE").exists()

    checkpoints = tmp_path / "checkpoints"
    latest = checkpoints / (checkpoints / "latest").read_text().strip()
    shard = next(latest.glob("*.distcp"))
    shard.write_bytes(shard.read_bytes()[:-64])  # the newest checkpoint is damaged: the one before is used
    resumed = launch(tmp_path, *run)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "ended without releasing it; taken over" in resumed.stdout  # the killed run's lock
    assert f"{latest} is damaged ({shard.name}: " in resumed.stdout
    assert (checkpoints / f"{latest.name}.damaged").is_dir()  # moved aside when the rerun saved that step again
    losses = {step: r["loss"] for step, r in records(tmp_path).items() if step <= 6}  # a step logged twice keeps
    assert losses == {step: r["loss"] for step, r in reference.items()}  # the rerun's; warm-up covers 8 steps


WORLD_4 = {  # four ranks: above two, the order in which a collective sums the ranks' values decides the last bit
    "ddp": ["parallelism=ddp"],
    "fsdp": ["parallelism=fsdp"],
    "tp2_dp2": ["parallelism.tp=2"],
    "pp2_dp2": ["parallelism.pp=2"],
}


def _exported(out) -> dict:
    from safetensors.torch import load_file

    hf_model = json.loads((out / "COMPLETE").read_text())["hf_model"]
    weights = {}
    for shard in sorted(os.listdir(hf_model)):
        if shard.endswith(".safetensors"):
            weights.update(load_file(os.path.join(hf_model, shard)))
    return weights


@pytest.mark.system
@pytest.mark.parametrize("layout", sorted(WORLD_4))
def test_resume_at_world_4_exports_the_uninterrupted_runs_weights_bit_for_bit(layout, tmp_path, launch, records):
    world_4 = ["instance.accelerators_per_node=4", "training.micro_batch_size=2", "training.checkpoint.every_n_steps=0",
               *WORLD_4[layout]]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    for out, steps in ((whole, 4), (parts, 2), (parts, 4)):
        result = launch(out, *world_4, f"training.max_steps={steps}")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "resumed from" in result.stdout
    assert {s: r["loss"] for s, r in records(parts).items()} == {s: r["loss"] for s, r in records(whole).items()}
    expected, resumed = _exported(whole), _exported(parts)
    assert sorted(resumed) == sorted(expected)
    differ = [name for name in expected if not torch.equal(expected[name], resumed[name])]
    assert differ == [], f"{len(differ)} of {len(expected)} tensors differ after the resume"


def test_a_resume_into_another_job_is_refused_or_announced(tmp_path, launch):
    """The issue's run: a 2-layer job resumed from a 4-layer checkpoint printed "resumed from", exit 0, and exported a
    2-layer model. Now refused at plan time, and by the ranks themselves (job.yaml edited past the launcher);
    a changed seq_len continues only when training.checkpoint.allow_changes names it, and says so."""
    import yaml

    first = launch(tmp_path, "training.max_steps=2", "training.checkpoint.every_n_steps=0")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    checkpoint = tmp_path / "checkpoints" / "step_00000002"

    planned = launch(tmp_path, "training.max_steps=4", "model.num_layers=2")
    assert planned.returncode == 2, planned.stdout[-3000:] + planned.stderr[-3000:]
    assert f"error: model.num_layers: {checkpoint} holds a model with model.num_layers=4, this job has 2; " \
        in planned.stderr
    assert "resumed from" not in planned.stdout

    job = yaml.safe_load((tmp_path / "job.yaml").read_text())
    job["model"]["num_layers"], job["training"]["max_steps"] = 2, 4
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    ranks = subprocess.run(["bash", str(tmp_path / "launch.sh")], capture_output=True, text=True, timeout=600)
    assert ranks.returncode != 0
    (line,) = [x for x in (ranks.stdout + ranks.stderr).splitlines() if x.startswith("train.cpt: ")]
    assert line.startswith(f"train.cpt: {checkpoint} holds a model with model.num_layers=4, this job has 2; a "
                           "checkpoint resumes only into the same model: set model.num_layers=4")
    assert "resumed from" not in ranks.stdout
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "step_00000002"

    refused = launch(tmp_path, "training.max_steps=4", "training.seq_len=128")
    assert refused.returncode == 2 and "error: training.seq_len: " in refused.stderr
    allowed = launch(tmp_path, "training.max_steps=4", "training.seq_len=128",
                     "training.checkpoint.allow_changes=[seq_len]")
    assert allowed.returncode == 0, allowed.stdout[-3000:] + allowed.stderr[-3000:]
    assert f"resuming {checkpoint} with training.seq_len changed from 256 to 128 " \
           "(training.checkpoint.allow_changes names seq_len)" in allowed.stdout
    assert f"resumed from {checkpoint} at step 2" in allowed.stdout
