"""Builds the transformers model a job names and loads its weights; parallelism is applied elsewhere.

A job that continues a pretrained model builds it from that model's own config.json (transformers' AutoConfig),
after checking that the job's model section agrees with it (llm_launch.launcher.pretrained_config: the launcher
filled and checked it where it could read the file; a folder only the job can read is checked here, when the job
starts). A job from scratch builds the model from its model section, with the special-token ids of its tokenizer.
"""

from __future__ import annotations

from pathlib import Path

import torch
from llm_launch.launcher.config.schema import ModelConfig
from llm_launch.launcher.model_math import head_dim
from llm_launch.launcher.pretrained_config import (
    CHECKED_FIELDS,
    PretrainedConfigError,
    differences,
    file_fields,
    read_local_config,
)
from llm_launch.train.errors import JobError

SPECIAL_TOKENS = ("bos_token_id", "eos_token_id", "pad_token_id")


def pretrained_config_json(model: ModelConfig) -> dict | None:
    """The pretrained model's config.json as a dict, after checking the job's model section against it;
    None for a model from scratch. A contradiction is a JobError listing every field."""
    if not model.pretrained_path:
        return None
    where = f"{model.pretrained_path.rstrip('/')}/config.json"
    try:
        config = read_local_config(model.pretrained_path)
        if config is None:
            raise JobError(f"model.pretrained_path: {where} does not exist; point model.pretrained_path at a Hugging "
                           "Face checkpoint folder")
        found = differences({f: getattr(model, f) for f in CHECKED_FIELDS}, file_fields(config, where), where)
    except PretrainedConfigError as exc:
        raise JobError(f"model.pretrained_path: {exc}") from None
    if found:
        raise JobError(f"the job's model section contradicts {where} in {len(found)} field(s):\n"
                       + "\n".join(f"  {key}: {message}" for key, message in found))
    return config


def tokenizer_special_ids(tokenizer_path: str | None) -> dict[str, int | None]:
    """bos/eos/pad ids of a tokenizer folder (pad falls back to eos, as the SFT packer pads), or {} without one."""
    if not tokenizer_path or not (Path(tokenizer_path) / "tokenizer.json").is_file():
        return {}
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id, "pad_token_id": pad}


def _config_from_fields(model: ModelConfig, special: dict[str, int | None]):
    """A transformers config of a model from scratch: its family's class, our fields, the tokenizer's ids."""
    from transformers import AutoConfig

    common = dict(
        vocab_size=model.vocab_size, hidden_size=model.hidden_size, intermediate_size=model.intermediate_size,
        num_hidden_layers=model.num_layers, num_attention_heads=model.num_attention_heads,
        num_key_value_heads=model.num_key_value_heads, head_dim=head_dim(model),
        max_position_embeddings=model.max_position_embeddings, rope_theta=model.rope_theta,
        rope_scaling=dict(model.rope_scaling) if model.rope_scaling else None,  # both transformers 4 and 5 read these
        rms_norm_eps=model.rms_norm_eps, tie_word_embeddings=model.tie_word_embeddings,
        **{k: special.get(k) for k in SPECIAL_TOKENS},
    )
    family = str(model.family)
    if family == "mistral":
        return AutoConfig.for_model("mistral", sliding_window=model.sliding_window, **common)
    if family in ("qwen2", "qwen3"):
        extra = {} if family == "qwen2" else {"attention_bias": model.attention_bias}
        return AutoConfig.for_model(family, sliding_window=model.sliding_window,
                                    use_sliding_window=model.sliding_window is not None, **extra, **common)
    return AutoConfig.for_model("llama", attention_bias=model.attention_bias, **common)


def hf_config(model: ModelConfig, tokenizer_path: str | None = None):
    """The transformers config the job trains: the pretrained model's own config.json (checked against the job's
    model section), else one built from the model section with the tokenizer's special-token ids."""
    from transformers import AutoConfig

    if pretrained_config_json(model) is not None:
        return AutoConfig.from_pretrained(model.pretrained_path)
    return _config_from_fields(model, tokenizer_special_ids(tokenizer_path))


def build_model(model: ModelConfig, seed: int, *, on_meta: bool = False, tokenizer_path: str | None = None) \
        -> torch.nn.Module:
    """A causal LM from the config: seeded random weights, or shapes only on the meta device.

    Weights of a pretrained checkpoint are loaded after parallelisation (load_hf_weights),
    so each rank reads only its shards.
    """
    from transformers import AutoModelForCausalLM

    config = hf_config(model, tokenizer_path)
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


def fresh_rotary(hf_model_config, rotary_class: type, device: torch.device) -> torch.nn.Module:
    """A rotary embedding with its tables computed on device (meta-built ones hold no values), of the model's own
    class and config, so rope scaling (Llama 3.1's llama3 type) is the pretrained model's."""
    return rotary_class(config=hf_model_config).to(device)


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
