"""Global gradient norm and clipping for any mix of plain tensors and DTensors, across pipeline stages.

clip_grad_norm_ cannot take DTensors on different meshes or placements together (TP, 2-D),
and under pipeline parallelism each rank sees only its stage's gradients. So: group the
gradients by (mesh, placements), take each group's norm (a DTensor norm is reduced over its
mesh), add the squares, sum them over the pipeline ranks, and clip every group with that one
total. The result equals the single-process norm.
"""

from __future__ import annotations

import math
from collections import defaultdict

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor


def _group_key(grad: torch.Tensor):
    if isinstance(grad, DTensor):
        return (id(grad.device_mesh), tuple(grad.placements))
    return None


def clip_gradients(parameters, max_norm: float, pp_group: dist.ProcessGroup | None) -> float:
    """Clip in place to max_norm (0 disables clipping) and return the global norm before clipping."""
    groups: dict = defaultdict(list)
    for param in parameters:
        if param.grad is not None:
            groups[_group_key(param.grad)].append(param)
    squares = torch.zeros((), dtype=torch.float64)
    for params in groups.values():
        norm = torch.nn.utils.get_total_norm([p.grad for p in params], norm_type=2.0)
        if isinstance(norm, DTensor):
            norm = norm.full_tensor()
        squares += norm.detach().double().cpu() ** 2
    if pp_group is not None and dist.get_world_size(pp_group) > 1:
        device = next(iter(groups.values()))[0].grad.device if groups else torch.device("cpu")
        total = squares.to(device)
        dist.all_reduce(total, group=pp_group)
        squares = total.cpu()
    total_norm = math.sqrt(float(squares))
    if max_norm > 0:
        for params in groups.values():
            torch.nn.utils.clip_grads_with_norm_(params, max_norm, torch.tensor(total_norm))
    return total_norm
