"""Checks against neuronx-distributed's own code, run in its CPU mode (docs/trainium.md, "Tests against NxD").

They run only when NXD_SRC points at NxD's src/neuronx_distributed (CI has no copy; see
docs/trainium.md) and need transformers 4.x, as the Neuron images have:
  NXD_SRC=.../src/neuronx_distributed <venv with transformers<5>/bin/python -m pytest tests/train/neuron/test_nxd_cpu.py
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from llm_launch.launcher import PROJECT_ROOT
from ports import free_port

NXD_SRC = os.environ.get("NXD_SRC")
TOOLS = os.environ.get("NXD_CPU_TOOLS", "/work/shared/tools/nxd-cpu")
pytestmark = [pytest.mark.system, pytest.mark.skipif(not NXD_SRC or not Path(TOOLS, "nxd_cpu.py").is_file(),
                                reason="NXD_SRC (neuronx-distributed source) not set")]
WORKER = Path(__file__).with_name("nxd_cpu_worker.py")
TINY = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=8,
            num_key_value_heads=2, max_position_embeddings=64, rope_theta=10000.0, rms_norm_eps=1e-5,
            tie_word_embeddings=False)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**TINY))
    folder = tmp_path_factory.mktemp("nxd") / "hf"
    model.save_pretrained(folder, safe_serialization=True)
    torch.save(model.state_dict(), folder.parent / "full.pt")
    return folder


def _env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join([TOOLS, str(PROJECT_ROOT)]), "NXD_CPU_MODE": "1"}


def _ours(hf, out, tp, pp, m, hw, fused):
    cmd = [sys.executable, "-m", "llm_launch.train.convert", "hf-to-nxd", "-i", str(hf), "-o", str(out), "--tp", str(tp), "--pp",
           str(pp), "--kv-replicator", str(m), "--hw", hw, "--fused-qkv" if fused else "--no-fused-qkv",
           "--no-progress"]
    subprocess.run(cmd, check=True, cwd=PROJECT_ROOT, capture_output=True)


@pytest.mark.parametrize("tp,pp,m,hw", [(2, 1, 1, "trn1"), (4, 2, 2, "trn1"), (8, 2, 4, "trn1"), (2, 2, 1, "trn2"),
                                         (4, 1, 2, "trn2"), (8, 1, 4, "trn2")])
def test_converter_matches_nxd_converter(tiny, tmp_path, tp, pp, m, hw):
    script = f"""
import sys; sys.path.insert(0, {TOOLS!r}); import nxd_cpu
from neuronx_distributed.scripts.checkpoint_converter import CheckpointConverterBase
c = CheckpointConverterBase()
args = c.get_arg_parser().parse_args(["--input_dir", {str(tiny.parent / 'full.pt')!r}, "--output_dir",
    {str(tmp_path / 'theirs')!r}, "--config", {str(tiny / 'config.json')!r}, "--tp_size", "{tp}", "--pp_size", "{pp}",
    "--kv_size_multiplier", "{m}", "--qkv_linear", "True", "--hw_backend", "{hw}", "--convert_from_full_state"])
c.run(args)
"""
    subprocess.run([sys.executable, "-c", script], check=True, env=_env(), cwd=tmp_path, capture_output=True)
    _ours(tiny, tmp_path / "ours", tp, pp, m, hw, False)
    differing = []
    for t in range(tp):
        for p in range(pp):
            name = f"dp_rank_00_tp_rank_{t:02d}_pp_rank_{p:02d}.pt"
            ours = torch.load(tmp_path / "ours" / "model" / name, weights_only=True)
            theirs = torch.load(tmp_path / "theirs" / "model" / name, weights_only=True)
            assert ours.keys() == theirs.keys(), name
            differing += [f"{name}:{k}" for k in ours if not torch.equal(ours[k], theirs[k])]
    if hw == "trn2" and m > 1:
        # NxD 2.29 tiles K/V with repeat() for trn2 too (interleaved), while its trn2 GQA layer replicates
        # blocked (repeat_interleave) and its Q order is blocked; we follow the layer (see docs/trainium.md).
        assert differing and all(k.endswith(("weight_k", "weight_v")) for k in differing)
    else:
        assert differing == []


@pytest.mark.parametrize("tp,pp,m", [(2, 1, 1), (4, 2, 2)])
def test_nxd_converter_reads_our_shards_back_to_the_full_model(tiny, tmp_path, tp, pp, m):
    """NxD's loader (its converter's plain torch.load of each shard) reads what hf-to-nxd writes: shards
    that hold only their own bytes and no CRC32."""
    _ours(tiny, tmp_path / "ours", tp, pp, m, "trn1", False)
    script = f"""
import sys; sys.path.insert(0, {TOOLS!r}); import nxd_cpu
from neuronx_distributed.scripts.checkpoint_converter import CheckpointConverterBase
c = CheckpointConverterBase()
args = c.get_arg_parser().parse_args(["--input_dir", {str(tmp_path / 'ours' / 'model')!r}, "--output_dir",
    {str(tmp_path / 'full')!r}, "--config", {str(tiny / 'config.json')!r}, "--tp_size", "{tp}", "--pp_size", "{pp}",
    "--kv_size_multiplier", "{m}", "--qkv_linear", "True", "--hw_backend", "trn1", "--convert_to_full_state"])
c.run(args)
"""
    subprocess.run([sys.executable, "-c", script], check=True, env=_env(), cwd=tmp_path, capture_output=True)
    full = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)  # NxD names the file
    original = torch.load(tiny.parent / "full.pt", weights_only=True)
    assert full.keys() == original.keys()
    assert all(torch.equal(full[k], original[k]) for k in original)


@pytest.mark.parametrize("tp,m,hw", [(2, 1, "trn1"), (4, 2, "trn1"), (4, 2, "trn2"), (8, 4, "trn2")])
def test_our_model_on_nxd_layers_equals_hf(tiny, tmp_path, tp, m, hw):
    """trn2 replicates KV heads in blocked order, trn1 interleaved: the converter writes the order the GQA
    layer of that platform expects, and the forward equals HF's either way."""
    _ours(tiny, tmp_path / "nxd", tp, 1, m, hw, False)
    out = tmp_path / "result.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(tp), "--master_port", str(free_port()),
           str(WORKER), "forward", str(tiny), str(tmp_path / "nxd"), str(tp), str(m), str(out)]
    proc = subprocess.run(cmd, env={**_env(), "NXD_PLATFORM": hw}, cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["max_abs_diff"] < 1e-4, result  # fp32; parallel sums change only the rounding
    assert abs(result["loss"] - result["hf_loss"]) < 1e-4, result
    assert abs(result["masked_loss"] - result["hf_masked_loss"]) < 1e-4, result  # loss on answer tokens only
    assert abs(result["masked_loss"] - result["loss"]) > 1e-3, result  # the mask changes what is counted


# The training loop on the Neuron backend (train/trainer.py over train/neuron/backend.py) in NxD's CPU mode.
# Tiny Llama jobs rendered for trn1 with one NeuronCore per "node" so that two CPU processes make the layout.
TRN1_ON_CPU = ["instance=ml.trn1.32xlarge", "instance.accelerators_per_node=1", "parallelism=zero1",
               "parallelism.data_parallel=ddp", "parallelism.sequence_parallel=false",
               "parallelism.activation_checkpointing=none", "training.precision=fp32",
               "training.log_every_n_steps=1"]
CPU_MODE_SAVE = "NxD's CPU mode cannot write checkpoints"
NO_TRACE_FROM_US = f'File "{PROJECT_ROOT / "train"}'


def _render(out: Path, *overrides: str) -> Path:
    cmd = [sys.executable, "-m", "llm_launch.launcher.cli", "action=render", f"output_dir={out}", *TRN1_ON_CPU, *overrides]
    proc = subprocess.run(cmd, cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return out / "job.yaml"


def _torchrun_command(tmp_path: Path, entrypoint: str, job: Path, *flags: str) -> list[str]:
    """torchrun over two ranks of python -m train.<entrypoint>, with NxD's CPU-mode shims imported first."""
    script = tmp_path / f"run_{entrypoint}.py"
    script.write_text(f"import runpy, sys\nsys.path.insert(0, {TOOLS!r})\nimport nxd_cpu  # noqa\n"
                      f"sys.argv = ['train.{entrypoint}', '--job', {str(job)!r}, *{list(flags)!r}]\n"
                      f"runpy.run_module('train.{entrypoint}', run_name='__main__')\n")
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
            str(script)]


def _torchrun(tmp_path: Path, entrypoint: str, job: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(_torchrun_command(tmp_path, entrypoint, job, *flags), env=_env(), cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=900)


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def gpu_trained(tmp_path_factory):
    """The default tiny Llama CPT, 4 steps on the GPU backend (gloo, CPU): its HF export and final val loss."""
    out = tmp_path_factory.mktemp("gpu")
    cmd = [sys.executable, "-m", "llm_launch.launcher.cli", f"output_dir={out}", "training.max_steps=4",
           "training.checkpoint.every_n_steps=0", "training.eval_every_n_steps=0"]
    proc = subprocess.run(cmd, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return out


def _to_nxd(hf: Path, out: Path, tp: int) -> Path:
    """hf-to-nxd shards for a trn1 job at tp (no pipeline); the job then names them as model.pretrained_path."""
    cmd = [sys.executable, "-m", "llm_launch.train.convert", "hf-to-nxd", "-i", str(hf), "-o", str(out), "--tp", str(tp),
           "--hw", "trn1", "--no-progress"]
    subprocess.run(cmd, check=True, cwd=PROJECT_ROOT, capture_output=True)
    return out


def test_eval_task_on_trainium_equals_the_gpu_evaluation_of_the_same_weights(gpu_trained, tmp_path):
    """task=eval on the Neuron backend: the GPU run's export, converted to NxD tp 2 shards, has the
    validation loss the GPU run measured on the same held-out rows (one validation code path, two backends)."""
    pretrained = _to_nxd(gpu_trained / "hf_model", tmp_path / "nxd" / "pretrained", tp=2)
    job = _render(tmp_path / "eval", "task=eval", "parallelism.tp=2", f"model.pretrained_path={pretrained}")
    proc = _torchrun(tmp_path, "eval", job)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "eval" / "eval.json").read_text())
    expected = json.loads((gpu_trained / "COMPLETE").read_text())["val_loss"]
    assert result["backend"] == "nxd" and result["rows"] > 0
    assert result["val_loss"] == pytest.approx(expected, rel=1e-5), (result, expected)
    assert (tmp_path / "eval" / "COMPLETE").is_file()


def _hf_step(model, rows_per_rank: list[list]) -> dict:
    """Loss and gradient norm of one step computed apart from both backends, on the HF model: every target token
    of the global batch weighted the same (train/loss.py), and, for contrast, the mean of micro-batch means."""
    import torch.nn.functional as F
    from llm_launch.train.loss import IGNORE, next_token_targets

    sums, counts = [], []
    for rows in rows_per_rank:
        for ids, mask in rows:
            targets = next_token_targets(ids, mask)
            logits = model(input_ids=ids).logits
            sums.append(F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE,
                                        reduction="sum"))
            counts.append(int((targets != IGNORE).sum()))

    def grad_norm(loss):
        model.zero_grad()
        loss.backward(retain_graph=True)
        return float(torch.sqrt(sum((p.grad.double() ** 2).sum() for p in model.parameters())))

    weighted = sum(sums) / sum(counts)
    mean_of_means = sum(s / c for s, c in zip(sums, counts, strict=True)) / len(sums)
    return {"loss": float(weighted.detach()), "grad_norm": grad_norm(weighted),
            "mean_of_means": float(mean_of_means.detach()),
            "mean_of_means_grad_norm": grad_norm(mean_of_means), "counts": counts}


def test_sft_step_weighs_every_target_token_and_logs_the_lr_it_used(gpu_trained, tmp_path):
    """SFT (masked prompts: micro-batches hold different numbers of target tokens) over two data-parallel ranks:
    the first step's loss and gradient norm equal a token-weighted computation on the HF model, the lr logged
    is the one each step used, validation runs on its cadence; the run then stops at its first checkpoint,
    which NxD's CPU mode cannot write."""
    from llm_launch.launcher.jobfile import read_job
    from llm_launch.train.data.loader import StepBatches
    from llm_launch.train.data.open import open_dataset
    from llm_launch.train.schedule import lr_factor
    from transformers import AutoModelForCausalLM

    out = tmp_path / "sft"
    pretrained = _to_nxd(gpu_trained / "hf_model", tmp_path / "nxd" / "pretrained", tp=1)
    job_path = _render(out, "recipe=tiny_llama_sft", "parallelism.tp=1", "training.max_steps=2",
                       "training.eval_every_n_steps=1", "training.checkpoint.every_n_steps=0",
                       f"model.pretrained_path={pretrained}")
    proc = _torchrun(tmp_path, "sft", job_path)
    assert proc.returncode != 0 and CPU_MODE_SAVE in proc.stderr, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert NO_TRACE_FROM_US not in proc.stderr  # one line per rank (torchrun then prints its own traceback)
    steps = {r["step"]: r for r in _records(out) if "loss" in r}
    validations = [r for r in _records(out) if "val_loss" in r]
    assert sorted(steps) == [1, 2] and [r["step"] for r in validations] == [1]
    assert math.isfinite(validations[0]["val_loss"])

    job = read_job(job_path)
    cfg = job.training
    for step, record in steps.items():
        assert record["lr"] == pytest.approx(cfg.optimizer.lr * lr_factor(step - 1, cfg.schedule, cfg.max_steps))
    assert steps[1]["lr"] != steps[2]["lr"]  # warm-up: logging the next step's lr would show here

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'group'}", rank=0, world_size=1)
    try:  # the packed copy the run used (the opener shares its folder over the process group)
        dataset = open_dataset(cfg.data.train_path, job, True)
    finally:
        dist.destroy_process_group()
    rows = [StepBatches(dataset, seed=cfg.seed, global_batch=cfg.global_batch_size, micro_batch=cfg.micro_batch_size,
                        dp_rank=rank, dp_size=2).micro_batches(0) for rank in range(2)]
    model = AutoModelForCausalLM.from_pretrained(gpu_trained / "hf_model", dtype=torch.float32)
    expected = _hf_step(model, rows)
    assert len(set(expected["counts"])) > 1, expected  # the micro-batches differ, so the weighting matters
    assert steps[1]["loss"] == pytest.approx(expected["loss"], rel=1e-5), (steps[1], expected)
    assert steps[1]["grad_norm"] == pytest.approx(expected["grad_norm"], rel=1e-4), (steps[1], expected)
    assert abs(expected["mean_of_means"] - expected["loss"]) > 1e-3 * expected["loss"]
    assert abs(expected["mean_of_means_grad_norm"] - expected["grad_norm"]) > 1e-3 * expected["grad_norm"]


def test_sigterm_stops_every_rank_after_the_same_step_and_goes_to_save(tmp_path):
    """SIGTERM during training: the ranks agree to stop after one step and go to the checkpoint, which NxD's CPU
    mode refuses with one line (on Trainium NxD's save_checkpoint writes it; see docs/trainium.md)."""
    out = tmp_path / "job"
    job = _render(out, "parallelism.tp=2", "training.max_steps=500", "training.eval_every_n_steps=0",
                  "training.checkpoint.every_n_steps=0")
    log, err = (tmp_path / "stdout").open("w"), (tmp_path / "stderr").open("w")
    proc = subprocess.Popen(_torchrun_command(tmp_path, "cpt", job), env=_env(), cwd=PROJECT_ROOT, stdout=log,
                            stderr=err, text=True)
    deadline = time.monotonic() + 600
    while not ((out / "metrics.jsonl").is_file() and any(r["step"] >= 2 for r in _records(out))):
        assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "stderr").read_text()[-3000:]
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=300)
    stdout, stderr = (tmp_path / "stdout").read_text(), (tmp_path / "stderr").read_text()
    assert proc.returncode != 0
    stopped = re.search(r"SIGTERM: stopping after step (\d+); saving a checkpoint", stdout)
    assert stopped, stdout[-2000:] + stderr[-2000:]
    assert max(r["step"] for r in _records(out)) == int(stopped.group(1)) < 500
    # Both ranks go to save; how many print before torchrun SIGTERMs the other after the first exits is a race.
    assert stderr.count(CPU_MODE_SAVE) >= 1, stderr[-3000:]
    assert NO_TRACE_FROM_US not in stderr, stderr[-3000:]
    assert not (out / "COMPLETE").exists()


def test_precompile_traces_its_steps_and_writes_nothing(tmp_path):
    """The Trainium entrypoint under --precompile (tp 2): data, model, optimizer and scheduler run for real
    through the loop's steps; no checkpoint, metrics or marker is written."""
    out = tmp_path / "job"
    job = _render(out, "parallelism.tp=2", "training.max_steps=10", "neuron.precompile_steps=3")
    proc = _torchrun(tmp_path, "cpt", job, "--precompile")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "precompile: traced 3 steps" in proc.stdout
    assert not (out / "COMPLETE").exists() and not any((out / "checkpoints").glob("step_*"))
    assert not (out / "metrics.jsonl").exists()
