"""Helpers shared by the conversion tests: a tiny random GQA Llama and an in-process CLI runner."""

from __future__ import annotations

import torch
from llm_launch.train.convert.cli import main
from transformers import LlamaConfig, LlamaForCausalLM

TINY = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=8,
            num_key_value_heads=2, max_position_embeddings=64, rope_theta=10000.0, rms_norm_eps=1e-5,
            tie_word_embeddings=False)


def tiny_model(seed: int = 0, **overrides) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(**{**TINY, **overrides})).eval()
    with torch.no_grad():  # norms start at 1.0; randomise them so a misplaced norm cannot pass unnoticed
        for name, param in model.named_parameters():
            if "norm" in name:
                param.uniform_(0.5, 1.5)
    return model


def convert(*args) -> int:
    """Run llm-launch-convert in-process; returns its exit code (0 when it returned normally)."""
    try:
        main([str(a) for a in args] + ["--no-progress"])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
