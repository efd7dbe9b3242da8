"""Writes a checkpoint's model as a Hugging Face folder (config, safetensors weights, tokenizer).

The engine's checkpoints hold the model under Hugging Face parameter names whatever the
layout (FSDP shards, tensor or pipeline slices), so rank 0 reads the full tensors back from
the checkpoint on its own, with no collective, into a fresh transformers model.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp

from launcher.config.schema import JobConfig, LoraConfig, ModelConfig
from train.gpu.lora import apply_lora, merge_lora
from train.model import hf_config

HF_DIR = "hf_model"


def model_from_checkpoint(checkpoint: Path, model: ModelConfig, lora: LoraConfig | None = None) -> torch.nn.Module:
    """A transformers model (fp32, CPU) holding the weights of an engine checkpoint; LoRA adapters merged."""
    from transformers import AutoModelForCausalLM

    fresh = AutoModelForCausalLM.from_config(hf_config(model), dtype=torch.float32)
    if lora is not None and lora.enabled:
        apply_lora(fresh, lora, seed=0)
    state = {"model": fresh.state_dict()}
    if model.tie_word_embeddings:
        state["model"].pop("lm_head.weight", None)
    with warnings.catch_warnings():  # DCP warns that it loads in one process, which is the intent
        warnings.simplefilter("ignore", UserWarning)
        dcp.load(state, checkpoint_id=str(checkpoint), no_dist=True)
    fresh.load_state_dict(state["model"], strict=not model.tie_word_embeddings)
    if model.tie_word_embeddings:
        fresh.tie_weights()
    return merge_lora(fresh) if lora is not None and lora.enabled else fresh


def write_hf_folder(model: torch.nn.Module, tokenizer_path: str, final: Path) -> Path:
    """save_pretrained with the tokenizer, appearing atomically at final (a previous export is replaced)."""
    from transformers import AutoTokenizer

    tmp = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    AutoTokenizer.from_pretrained(tokenizer_path).save_pretrained(tmp)
    if final.exists():
        previous = final.with_name(f".{final.name}.previous")
        shutil.rmtree(previous, ignore_errors=True)
        os.replace(final, previous)
        os.replace(tmp, final)
        shutil.rmtree(previous)
    else:
        os.replace(tmp, final)
    return final


def export_hf_from_checkpoint(checkpoint: Path, job: JobConfig, out_dir: Path, *, is_main: bool) -> Path:
    """Rank 0 exports the checkpoint to <out_dir>/hf_model while the other ranks wait (collective)."""
    final = out_dir / HF_DIR
    if is_main:
        model = model_from_checkpoint(checkpoint, job.model, job.training.lora)
        write_hf_folder(model, job.training.data.tokenizer_path, final)
    dist.barrier()
    return final
