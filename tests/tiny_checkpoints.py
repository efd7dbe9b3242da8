"""Tiny published-style Hugging Face checkpoints of each family, made with transformers (no hub is reachable).

Random weights, save_pretrained, then config.json rewritten the way the published files read (written by
transformers 4.4x: rope_theta and rope_scaling keys, torch_dtype, their transformers_version), plus a
generation_config.json and the sample tokenizer. Each carries its family's features:

* llama31: Llama 3.1's rope scaling (rope_type llama3, factor 8; https://huggingface.co/meta-llama/Llama-3.1-8B/blob/main/config.json)
  and its own special-token ids (bos 2000, eos 2001, as Llama 3's 128000/128001 differ from 0/1/2);
* mistral: Mistral 7B v0.1's sliding window (https://huggingface.co/mistralai/Mistral-7B-v0.1/blob/main/config.json);
* qwen2_5: q/k/v biases and tied embeddings of the small Qwen2.5 models, use_sliding_window false with a window
  value present (https://huggingface.co/Qwen/Qwen2.5-0.5B/blob/main/config.json);
* qwen3: QK-norm and a head_dim wider than hidden_size / heads (https://huggingface.co/Qwen/Qwen3-8B/blob/main/config.json).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from llm_launch.launcher import PROJECT_ROOT

SAMPLE_TOKENIZER = PROJECT_ROOT / "data" / "sample" / "tokenizer"
SHAPE = dict(vocab_size=2048, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=1024)
FAMILIES = {
    "llama31": ("llama", dict(rope_theta=500000.0, rms_norm_eps=1e-5, bos_token_id=2000, eos_token_id=2001,
                              rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                            "high_freq_factor": 4.0, "original_max_position_embeddings": 256},
                              attention_bias=False, mlp_bias=False, tie_word_embeddings=False)),
    "mistral": ("mistral", dict(rope_theta=10000.0, rms_norm_eps=1e-5, sliding_window=512, bos_token_id=1,
                                eos_token_id=2, tie_word_embeddings=False)),
    "qwen2_5": ("qwen2", dict(rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True, bos_token_id=2000,
                              eos_token_id=2000, use_sliding_window=False, sliding_window=1024, max_window_layers=2)),
    "qwen3": ("qwen3", dict(rope_theta=1000000.0, rms_norm_eps=1e-6, head_dim=32, attention_bias=False,
                            tie_word_embeddings=False, bos_token_id=2000, eos_token_id=2001, use_sliding_window=False,
                            sliding_window=None, max_window_layers=2)),
}
"""name -> (model_type, the config.json fields beyond SHAPE)."""


def published_style(config: dict, fields: dict) -> dict:
    """config.json as transformers 4.4x wrote the published files: rope_theta and rope_scaling at the top level."""
    out = {k: v for k, v in config.items() if k not in ("rope_parameters", "dtype", "transformers_version")}
    out["rope_theta"] = fields["rope_theta"]
    out["rope_scaling"] = fields.get("rope_scaling")
    out["torch_dtype"] = "bfloat16"
    out["transformers_version"] = "4.45.0"
    return dict(sorted(out.items()))


def make_checkpoint(name: str, folder: Path, seed: int = 0) -> Path:
    """The tiny checkpoint of family name in folder (created), with tokenizer and generation config."""
    from transformers import AutoConfig, AutoModelForCausalLM

    model_type, fields = FAMILIES[name]
    config = AutoConfig.for_model(model_type, **SHAPE, **fields)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():  # norms at 1 and biases at 0 would hide a weight that is not loaded
        for key, param in model.named_parameters():
            if key.endswith("norm.weight") or key.endswith(".bias"):
                param.copy_(1.0 + 0.1 * torch.randn_like(param) if key.endswith("weight") else 0.1 * torch.randn_like(param))
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    written = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(published_style(written, fields), indent=2) + "\n")
    generation = {"bos_token_id": fields["bos_token_id"], "eos_token_id": fields["eos_token_id"], "do_sample": True,
                  "temperature": 0.6, "top_p": 0.9, "transformers_version": "4.45.0"}
    (folder / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    for file in SAMPLE_TOKENIZER.iterdir():
        shutil.copy(file, folder / file.name)
    return folder
