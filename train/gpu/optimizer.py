"""The torch engine's optimizer: AdamW over the parameters that train."""

from __future__ import annotations

import torch
from llm_launch.launcher.config.schema import OptimizerConfig
from torch.distributed.tensor import DTensor


def build_optimizer(params: list[torch.nn.Parameter], opt: OptimizerConfig, *, fused: bool = True) -> torch.optim.Optimizer:
    """AdamW with the job's settings; the fused kernel where the device has one (fused: the device row's fused_adamw)
    and every parameter is the same kind of tensor, else torch's default (foreach where it applies)."""
    # The fused kernel takes one kind of tensor at a time: plain tensors beside DTensors (tensor
    # parallel without FSDP) fall back to the per-tensor loop.
    uniform = len({isinstance(p, DTensor) for p in params}) == 1
    if not fused:
        return torch.optim.AdamW(params, lr=opt.lr, betas=(opt.beta1, opt.beta2), eps=opt.eps,
                                 weight_decay=opt.weight_decay, foreach=None if uniform else False)
    return torch.optim.AdamW(params, lr=opt.lr, betas=(opt.beta1, opt.beta2), eps=opt.eps,
                             weight_decay=opt.weight_decay, fused=uniform or None, foreach=None if uniform else False)
