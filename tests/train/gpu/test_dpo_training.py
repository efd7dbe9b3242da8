"""Preference tuning (task=dpo) end to end on the tiny Llama, 2 gloo processes.

The reference's log-probabilities are checked against the base model run independently through
transformers on the same pairs; the loss against the sigmoid formula of those log-probabilities.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from llm_launch.launcher import PROJECT_ROOT

SAMPLE = PROJECT_ROOT / "data" / "sample"
DPO = ["recipe=tiny_llama_dpo", "training.eval_every_n_steps=0", "training.log_every_n_steps=1"]


@pytest.fixture(scope="module")
def base_folder(base_model):
    return base_model[0]


def base_logps_of_step(run_dir, base_folder, step: int) -> dict[str, float]:
    """Mean response log-probabilities of the global batch of a step under the base model (transformers, fp32)."""
    from llm_launch.launcher.jobfile import read_job
    from llm_launch.train.data.dpo import PairRows, PreferenceDataset
    from llm_launch.train.data.loader import StepBatches
    from transformers import AutoModelForCausalLM

    job = read_job(run_dir / "job.yaml")
    cfg = job.training
    packed = next(p for p in (run_dir / "data").iterdir() if "-dpo-" in p.name and "preference_valid" not in p.name)
    rows = PairRows(PreferenceDataset.open(packed))
    (ids, mask), = StepBatches(rows, seed=cfg.seed, global_batch=cfg.global_batch_size,
                               micro_batch=cfg.global_batch_size, dp_rank=0, dp_size=1).micro_batches(step - 1)
    model = AutoModelForCausalLM.from_pretrained(base_folder).eval()
    means = {}
    for side, name in ((0, "ref_logps_chosen"), (1, "ref_logps_rejected")):
        with torch.no_grad():
            logits = model(ids[:, side]).logits.float()
        logps = torch.log_softmax(logits[:, :-1], dim=-1).gather(2, ids[:, side, 1:].unsqueeze(-1)).squeeze(-1)
        means[name] = float((logps * mask[:, side, 1:]).sum(-1).mean())
    return means


VARIANTS = {
    "full-fsdp": ["parallelism=fsdp"],
    "lora-fsdp": ["parallelism=fsdp", "training.lora.enabled=true", "training.lora.rank=4"],
    "full-tp2": ["parallelism=ddp", "parallelism.tp=2", "parallelism.sequence_parallel=true"],
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_reference_is_the_base_model_and_the_loss_is_the_sigmoid_of_the_margin(variant, base_folder, tmp_path,
                                                                                 launch, records):
    extra = VARIANTS[variant]
    result = launch(tmp_path, *DPO, f"model.pretrained_path={base_folder}",
                    "training.max_steps=3", "training.checkpoint.every_n_steps=0", "training.optimizer.lr=2e-3",
                    *extra)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    steps = records(tmp_path)
    first = steps[1]
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-6)  # the policy starts as the reference
    assert first["logps_chosen"] == pytest.approx(first["ref_logps_chosen"], abs=1e-4)
    last = steps[3]
    assert last["logps_chosen"] != pytest.approx(last["ref_logps_chosen"], abs=1e-3)  # the policy moved
    expected = base_logps_of_step(tmp_path, base_folder, 3)
    assert last["ref_logps_chosen"] == pytest.approx(expected["ref_logps_chosen"], rel=1e-4)
    assert last["ref_logps_rejected"] == pytest.approx(expected["ref_logps_rejected"], rel=1e-4)
    assert last["reward_margin"] == pytest.approx(last["rewards_chosen"] - last["rewards_rejected"], abs=1e-6)
    assert 0 <= last["reward_accuracy"] <= 1
    if variant.startswith("lora"):
        from safetensors.torch import load_file

        base = load_file(base_folder / "model.safetensors")
        exported = load_file(tmp_path / "hf_model" / "model.safetensors")
        assert set(exported) == set(base)  # merged: a plain model
        assert torch.equal(exported["model.embed_tokens.weight"], base["model.embed_tokens.weight"])  # frozen


def test_rewards_rise_and_a_resumed_run_is_bit_exact(base_folder, tmp_path, launch, records):
    # 16 pairs of the shipped sample, 2 steps an epoch: 20 steps see each pair 10 times. Warm-up covers
    # every step, so the learning rate of a step does not depend on max_steps (10 or 20).
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join((SAMPLE / "sft" / "preference.jsonl").read_text().splitlines(keepends=True)[:16]))
    common = [*DPO, f"model.pretrained_path={base_folder}", "training.checkpoint.every_n_steps=10",
              f"training.data.train_path={pairs}", "training.optimizer.lr=1e-3", "training.schedule.warmup_steps=20"]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    result = launch(whole, *common, "training.max_steps=20", "training.eval_every_n_steps=20")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert launch(parts, *common, "training.max_steps=10").returncode == 0
    resumed = launch(parts, *common, "training.max_steps=20", "training.eval_every_n_steps=20")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout + resumed.stderr
    one, two = records(whole), records(parts)
    for step in range(11, 21):
        assert one[step]["loss"] == two[step]["loss"], step
        assert one[step]["reward_margin"] == two[step]["reward_margin"], step

    def accuracy(first: int, last: int) -> float:
        return sum(one[s]["reward_accuracy"] for s in range(first, last + 1)) / (last - first + 1)

    assert accuracy(16, 20) > accuracy(1, 5)
    assert accuracy(16, 20) > 0.6
    valid = [json.loads(line) for line in (whole / "metrics.jsonl").read_text().splitlines() if "val_loss" in line]
    assert valid and "val_reward_accuracy" in valid[-1] and "val_ppl" not in valid[-1]
    assert (whole / "hf_model" / "model.safetensors").is_file()
