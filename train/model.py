"""Builds the transformers model a job names; parallelism is applied elsewhere."""

from __future__ import annotations

import torch

from launcher.config.schema import ModelConfig
from launcher.model_math import head_dim


def hf_config(model: ModelConfig):
    """The transformers config object for our model spec."""
    from transformers import LlamaConfig, MistralConfig

    common = dict(
        vocab_size=model.vocab_size, hidden_size=model.hidden_size, intermediate_size=model.intermediate_size,
        num_hidden_layers=model.num_layers, num_attention_heads=model.num_attention_heads,
        num_key_value_heads=model.num_key_value_heads, head_dim=head_dim(model),
        max_position_embeddings=model.max_position_embeddings, rope_theta=model.rope_theta,
        rms_norm_eps=model.rms_norm_eps, tie_word_embeddings=model.tie_word_embeddings,
        bos_token_id=0, eos_token_id=1, pad_token_id=2,
    )
    if model.family == "mistral":
        return MistralConfig(sliding_window=model.sliding_window, **common)
    return LlamaConfig(**common)


def build_model(model: ModelConfig, seed: int) -> torch.nn.Module:
    """A causal LM: loaded from model.pretrained_path, or initialised from the config with seed."""
    from transformers import AutoModelForCausalLM

    if model.pretrained_path:
        return AutoModelForCausalLM.from_pretrained(model.pretrained_path, dtype=torch.float32)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(hf_config(model), dtype=torch.float32)
