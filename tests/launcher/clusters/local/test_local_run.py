"""End to end through the CLI: llm-launch trains the tiny default on 2 local processes.

Warm-up (10 steps) covers every step these runs take, so the learning rate at a step does
not depend on max_steps and runs of different lengths are comparable step for step.
"""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.system  # every test trains through torchrun (about 20-60 s each)

STEPS = ["training.log_every_n_steps=1", "training.eval_every_n_steps=0", "training.checkpoint.every_n_steps=3"]


def launch(out_dir, *overrides):
    command = [sys.executable, "-m", "llm_launch.launcher.cli", f"output_dir={out_dir}", *STEPS, *overrides]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def losses(out_dir) -> dict[int, float]:
    records = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records if "loss" in r}


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    result = launch(out, "training.max_steps=6")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out, result


def test_run_completes_and_writes_its_outputs(straight):
    out, result = straight
    summary = json.loads((out / "COMPLETE").read_text())
    assert summary["step"] == 6 and summary["world_size"] == 2
    for name in ("plan.json", "job.yaml", "launch.sh", "train.log", "metrics.jsonl"):
        assert (out / name).is_file(), name
    curve = losses(out)
    assert sorted(curve) == [1, 2, 3, 4, 5, 6]
    assert curve[6] < curve[1] - 0.5, curve
    assert (out / "checkpoints" / "latest").read_text().strip() == "step_00000006"
    assert sorted(p.name for p in (out / "checkpoints").glob("step_*")) == ["step_00000003", "step_00000006"]


def test_exported_model_loads_with_transformers(straight):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, _ = straight
    model = AutoModelForCausalLM.from_pretrained(out / "hf_model")
    tokenizer = AutoTokenizer.from_pretrained(out / "hf_model")
    ids = tokenizer("In the beginning God created", return_tensors="pt").input_ids
    logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], 2048)
    assert logits.isfinite().all()


def test_resume_after_extending_matches_an_uninterrupted_run(straight, tmp_path):
    reference = losses(straight[0])
    first = launch(tmp_path, "training.max_steps=3")
    assert first.returncode == 0, first.stderr[-3000:]
    second = launch(tmp_path, "training.max_steps=6")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed from" in second.stdout and "step_00000003" in second.stdout
    assert losses(tmp_path) == reference  # bit for bit on CPU

    again = launch(tmp_path, "training.max_steps=6")
    assert again.returncode == 0
    assert "already holds a completed run" in again.stdout


def test_fsdp2_with_recompute_reproduces_ddp(straight, tmp_path):
    result = launch(tmp_path, "training.max_steps=3", "parallelism=fsdp", "parallelism.activation_checkpointing=full")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    reference, fsdp = losses(straight[0]), losses(tmp_path)
    for step in (1, 2, 3):
        assert fsdp[step] == pytest.approx(reference[step], rel=1e-5, abs=1e-6)


def _truncated_shard(tmp_path):
    from llm_launch.train.data.packed import write_packed

    data = tmp_path / "packed"
    write_packed(data, [list(range(5, 300))] * 40, seq_len=256, eos_id=1, vocab_size=2048)
    shard = data / "shard_00000.bin"
    shard.write_bytes(shard.read_bytes()[:-100])
    return data, f"{shard}: "


def _corpus_with_bad_utf8(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_bytes(b'{"text": "In the beginning"}\n' * 30 + b'{"text": "caf\xe9"}\n')
    return corpus, f"{corpus}:31: not valid UTF-8"


@pytest.mark.parametrize("bad_data", [_truncated_shard, _corpus_with_bad_utf8], ids=["truncated-shard", "bad-utf8"])
def test_bad_data_ends_in_one_line_naming_the_file_exit_2(tmp_path, bad_data):
    """Every rank meets the truncated shard; only rank 0 packs the corpus while the other waits. Either way the
    command ends with the one line, printed once; the other rank's end is in train.log only."""
    path, named = bad_data(tmp_path)
    result = launch(tmp_path / "out", "training.max_steps=1", f"training.data.train_path={path}")
    assert result.returncode == 2, result.stdout[-3000:] + result.stderr[-3000:]
    output = result.stdout + result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"llm-launch: {named}"), output[-3000:]
    assert output.count(named) == 1 and "Traceback" not in output and "ChildFailedError" not in output
