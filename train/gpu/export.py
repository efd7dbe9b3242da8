"""Writes a model as a Hugging Face folder (config, safetensors weights, tokenizer).

The engine's modules and checkpoints hold the model under Hugging Face parameter names whatever
the layout (FSDP shards, tensor or pipeline slices). At the end of training the ranks gather the
trained model's full tensors to rank 0 (export_hf_from_model): no shard has to be on rank 0's disk,
which it is not when nodes keep checkpoints on their own disks. The converter reads a checkpoint
folder on its own, with no collective (model_from_checkpoint).

The folder differs from the pretrained source only in its weights: config.json and generation_config.json are
the source's files, copied byte for byte (save_pretrained would rewrite transformers_version, torch_dtype as
dtype, and, in transformers 5, rope_theta and rope_scaling as rope_parameters), and the tokenizer files are
copied from training.data.tokenizer_path as they are. A model trained from scratch gets save_pretrained's
config.json, whose special-token ids are the tokenizer's (llm_launch.train.model.hf_config).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from llm_launch.launcher.config.schema import JobConfig, LoraConfig, ModelConfig
from llm_launch.train.convert.tokenizer_files import TOKENIZER_FILES
from llm_launch.train.gpu.lora import apply_lora, merge_lora
from llm_launch.train.model import hf_config

HF_DIR = "hf_model"


SOURCE_CONFIG_FILES = ("config.json", "generation_config.json")
"""Copied from the pretrained source into the export as they are."""


def _fresh_model(model: ModelConfig, lora: LoraConfig | None, tokenizer_path: str | None = None) -> torch.nn.Module:
    """A transformers model (fp32, CPU) of the job's architecture, with adapters where the job trains them."""
    from transformers import AutoModelForCausalLM

    fresh = AutoModelForCausalLM.from_config(hf_config(model, tokenizer_path), dtype=torch.float32)
    if lora is not None and lora.enabled:
        apply_lora(fresh, lora, seed=0)
    return fresh


def _filled(fresh: torch.nn.Module, weights: dict[str, torch.Tensor], model: ModelConfig,
            lora: LoraConfig | None) -> torch.nn.Module:
    """fresh holding weights (Hugging Face names); LoRA adapters merged."""
    if model.tie_word_embeddings:
        weights.pop("lm_head.weight", None)
    fresh.load_state_dict(weights, strict=not model.tie_word_embeddings)
    if model.tie_word_embeddings:
        fresh.tie_weights()
    return merge_lora(fresh) if lora is not None and lora.enabled else fresh


def model_from_checkpoint(checkpoint: Path, model: ModelConfig, lora: LoraConfig | None = None,
                          tokenizer_path: str | None = None) -> torch.nn.Module:
    """A transformers model (fp32, CPU) holding the weights of an engine checkpoint; LoRA adapters merged."""
    fresh = _fresh_model(model, lora, tokenizer_path)
    state = {"model": fresh.state_dict()}
    if model.tie_word_embeddings:
        state["model"].pop("lm_head.weight", None)
    with warnings.catch_warnings():  # DCP warns that it loads in one process, which is the intent
        warnings.simplefilter("ignore", UserWarning)
        dcp.load(state, checkpoint_id=str(checkpoint), no_dist=True)
    return _filled(fresh, state["model"], model, lora)


def gather_full_weights(module: torch.nn.Module, *, keep: bool, gather_stages: bool) -> dict[str, torch.Tensor]:
    """This rank's part of the model as full fp32 CPU tensors, on rank 0 (collective).

    Sharded and tensor-parallel parameters are gathered one tensor at a time (each DTensor's own
    mesh); ranks with keep (one per model part: data- and tensor-parallel rank 0) hold the result.
    With pipeline stages, every stage's part is then sent to rank 0. Nothing is read from disk, so
    the checkpoint's shards may be spread over the nodes' own disks.
    """
    from torch.distributed.tensor import DTensor

    part: dict[str, torch.Tensor] = {}
    for key, value in module.state_dict().items():
        if isinstance(value, DTensor):
            value = value.full_tensor()
        if keep:
            part[key] = value.detach().to("cpu", torch.float32, copy=True)
    if not gather_stages:
        return part
    parts: list | None = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(part, parts, dst=0)
    return {k: v for p in parts or [] for k, v in (p or {}).items()}


@contextlib.contextmanager
def quiet_transformers_progress():
    """Without transformers' "Writing model shards" tqdm bar (modeling_utils.save_pretrained), which otherwise
    ends up in the job's log as carriage-return frames; the previous setting is restored after."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


def copy_tokenizer(tokenizer_path: str, out: Path) -> None:
    """The tokenizer folder's files, copied as they are (AutoTokenizer's save_pretrained for a folder without
    any of them, e.g. a hub name)."""
    files = [Path(tokenizer_path) / name for name in TOKENIZER_FILES if (Path(tokenizer_path) / name).is_file()]
    if not files:
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(tokenizer_path).save_pretrained(out)
    for file in files:
        shutil.copyfile(file, out / file.name)


def write_hf_folder(model: torch.nn.Module, tokenizer_path: str, final: Path, source: str | None = None) -> Path:
    """save_pretrained with the tokenizer, appearing atomically at final (a previous export is replaced); the
    source's config.json and generation_config.json replace the ones save_pretrained writes."""
    tmp = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    with quiet_transformers_progress():
        model.save_pretrained(tmp, safe_serialization=True)
    if source:
        for name in SOURCE_CONFIG_FILES:
            if (Path(source) / name).is_file():
                shutil.copyfile(Path(source) / name, tmp / name)
    copy_tokenizer(tokenizer_path, tmp)
    if final.exists():
        previous = final.with_name(f".{final.name}.previous")
        shutil.rmtree(previous, ignore_errors=True)
        os.replace(final, previous)
        os.replace(tmp, final)
        shutil.rmtree(previous)
    else:
        os.replace(tmp, final)
    return final


def export_hf_from_model(module: torch.nn.Module, job: JobConfig, out_dir: Path, *, is_main: bool, keep: bool,
                         gather_stages: bool) -> Path:
    """Export the trained model held in memory to <out_dir>/hf_model (collective; rank 0 writes)."""
    final = out_dir / HF_DIR
    weights = gather_full_weights(module, keep=keep, gather_stages=gather_stages)
    if is_main:
        tokenizer = job.training.data.tokenizer_path
        model = _filled(_fresh_model(job.model, job.training.lora, tokenizer), weights, job.model, job.training.lora)
        write_hf_folder(model, tokenizer, final, source=job.model.pretrained_path)
    dist.barrier()
    return final
