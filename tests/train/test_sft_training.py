"""SFT counts only answer tokens: targets are masked on prompts, and the first logged loss of a LoRA
SFT run equals the base model's loss on the answer tokens alone."""

import pytest
import torch
from llm_launch.train.loss import IGNORE, next_token_targets, summed_cross_entropy, target_count


def test_targets_are_the_next_tokens_only_where_the_mask_says_learn():
    ids = torch.tensor([[10, 11, 12, 13, 14, 15]])
    mask = torch.tensor([[0, 0, 0, 1, 1, 0]])  # prompt 10..12, answer 13 14, then padding
    targets = next_token_targets(ids, mask)
    assert targets.tolist() == [[IGNORE, IGNORE, 13, 14, IGNORE, IGNORE]]
    assert target_count(targets) == 2
    assert next_token_targets(ids).tolist() == [[11, 12, 13, 14, 15, IGNORE]]  # pre-training: every token


def test_ignored_positions_add_nothing_to_the_loss():
    logits = torch.randn(1, 4, 8)
    targets = torch.tensor([[3, IGNORE, 5, IGNORE]])
    expected = summed_cross_entropy(logits[:, [0]], targets[:, [0]]) + summed_cross_entropy(logits[:, [2]],
                                                                                           targets[:, [2]])
    torch.testing.assert_close(summed_cross_entropy(logits, targets), expected)


def test_lora_sft_run_learns_from_answer_tokens_only(tmp_path, launch, records):
    from llm_launch.launcher.jobfile import read_job
    from llm_launch.train.data.loader import StepBatches
    from llm_launch.train.data.packed import PackedDataset
    from llm_launch.train.model import build_model

    result = launch(tmp_path, "recipe=tiny_llama_sft", "training.max_steps=2", "training.checkpoint.every_n_steps=0",
                    "training.lora.enabled=true", "parallelism=fsdp")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    first_loss = records(tmp_path)[1]["loss"]

    job = read_job(tmp_path / "job.yaml")
    packed = PackedDataset.open(next(p for p in (tmp_path / "data").iterdir() if p.name.startswith("train")))
    assert packed.has_loss_mask
    ids, mask = StepBatches(packed, seed=job.training.seed, global_batch=4, micro_batch=4, dp_rank=0,
                            dp_size=1).micro_batches(0)[0]
    labels = ids.masked_fill(mask == 0, IGNORE)
    assert 0 < int((labels != IGNORE).sum()) < labels.numel() // 2  # prompts and padding really are left out
    base = build_model(job.model, job.training.seed).eval()  # LoRA starts as the identity (B = 0)
    with torch.no_grad():
        expected = base(input_ids=ids, labels=labels).loss.item()
    assert first_loss == pytest.approx(expected, rel=1e-5)
