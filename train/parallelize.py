"""Applies activation checkpointing, torch.compile and data parallelism (DDP or FSDP2) to a model.

Order follows torchtitan: recompute wrappers, then compile, then FSDP, each per decoder layer.
"""

from __future__ import annotations

import torch
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.nn.parallel import DistributedDataParallel

from train.distributed import Dist


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The transformer blocks of a transformers causal LM."""
    return list(model.model.layers)


def apply_activation_checkpointing(model: torch.nn.Module, mode: str) -> None:
    """Recompute decoder layers in backward: every layer (full) or every other one (selective)."""
    if mode == "none":
        return
    layers = model.model.layers
    for i, layer in enumerate(layers):
        if mode == "full" or i % 2 == 0:
            layers[i] = checkpoint_wrapper(layer, preserve_rng_state=False)


def apply_compile(model: torch.nn.Module) -> None:
    """Compile each decoder layer (repeated blocks share one compiled graph)."""
    for layer in decoder_layers(model):
        layer.compile()


def apply_data_parallel(model: torch.nn.Module, mode: str, dist_ctx: Dist, bf16: bool) -> torch.nn.Module:
    """Wrap or shard the model for data parallelism; returns the module to train."""
    model.to(dist_ctx.device)
    if mode in ("fsdp", "hsdp"):
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16 if bf16 else None, reduce_dtype=torch.float32)
        for layer in decoder_layers(model):
            fully_shard(layer, mesh=dist_ctx.mesh, mp_policy=policy)
        fully_shard(model, mesh=dist_ctx.mesh, mp_policy=policy)
        return model
    if mode == "ddp" and dist_ctx.world_size > 1:
        device_ids = [dist_ctx.device.index] if dist_ctx.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids)
    return model


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model under any DDP wrapper."""
    return model.module if isinstance(model, DistributedDataParallel) else model
