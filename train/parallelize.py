"""Applies data parallelism to a model: DDP, or FSDP2 (fully_shard per decoder layer)."""

from __future__ import annotations

import torch
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.nn.parallel import DistributedDataParallel

from train.distributed import Dist


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The transformer blocks of a transformers causal LM."""
    return list(model.model.layers)


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
