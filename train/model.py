"""Builds the transformers model a job names and loads its weights; parallelism is applied elsewhere."""

from __future__ import annotations

from pathlib import Path

import torch
from llm_launch.launcher.config.schema import ModelConfig
from llm_launch.launcher.model_math import head_dim


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


def build_model(model: ModelConfig, seed: int, *, on_meta: bool = False) -> torch.nn.Module:
    """A causal LM from the config: seeded random weights, or shapes only on the meta device.

    Weights of a pretrained checkpoint are loaded after parallelisation (load_hf_weights),
    so each rank reads only its shards.
    """
    from transformers import AutoModelForCausalLM

    config = hf_config(model)
    config._attn_implementation = "sdpa"
    if on_meta:
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32)


def load_pretrained(checkpoint: str | Path) -> torch.nn.Module:
    """A Hugging Face checkpoint loaded whole on this rank (fp32, CPU)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32, attn_implementation="sdpa")


def fresh_rotary(model: ModelConfig, device: torch.device) -> torch.nn.Module:
    """A rotary embedding with its tables computed on device (meta-built ones hold no values)."""
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    return LlamaRotaryEmbedding(config=hf_config(model)).to(device)


def load_hf_weights(module: torch.nn.Module, checkpoint: str | Path, *, tied: bool) -> None:
    """Load a Hugging Face safetensors folder (single file or sharded index) into module's parameters.

    module may be sharded (DTensors under FSDP or TP) and hold only some layers (a pipeline
    stage): DCP reads just the slices this rank owns, so no rank materialises the whole model.
    """
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import HuggingFaceStorageReader
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, set_model_state_dict

    state = get_model_state_dict(module)
    wanted = {key: value for key, value in state.items() if not (tied and key == "lm_head.weight")}
    dcp.load(wanted, storage_reader=HuggingFaceStorageReader(str(checkpoint)))
    set_model_state_dict(module, wanted, options=_strict_options(tied))


def _strict_options(tied: bool):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(strict=not tied)
