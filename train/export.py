"""Writes the trained model as a Hugging Face folder (config, safetensors weights, tokenizer)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

from launcher.config.schema import JobConfig
from train.model import hf_config

HF_DIR = "hf_model"


def export_hf(model: torch.nn.Module, job: JobConfig, out_dir: Path, *, is_main: bool) -> Path:
    """Gather the full weights (collective) and save them on rank 0; the folder appears atomically."""
    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    final = out_dir / HF_DIR
    if not is_main:
        return final
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = out_dir / f".{HF_DIR}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    fresh = AutoModelForCausalLM.from_config(hf_config(job.model), dtype=torch.float32)
    fresh.load_state_dict(full)
    fresh.save_pretrained(tmp, safe_serialization=True)
    AutoTokenizer.from_pretrained(job.training.data.tokenizer_path).save_pretrained(tmp)
    if final.exists():
        previous = out_dir / f".{HF_DIR}.previous"
        shutil.rmtree(previous, ignore_errors=True)
        os.replace(final, previous)
        os.replace(tmp, final)
        shutil.rmtree(previous)
    else:
        os.replace(tmp, final)
    return final
