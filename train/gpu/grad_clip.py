"""Global gradient norm and clipping for any mix of plain tensors and DTensors, across pipeline stages.

clip_grad_norm_ cannot take DTensors on different meshes or placements together (TP, 2-D),
and under pipeline parallelism each rank sees only its stage's gradients. So: group the
gradients by (mesh, placements), take each group's norm (a DTensor norm is reduced over its
mesh), add the squares, sum them over the pipeline ranks, and clip every group with that one
total. The result equals the single-process norm.
"""

from __future__ import annotations

from collections import defaultdict

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor


def _group_key(grad: torch.Tensor):
    if isinstance(grad, DTensor):
        return (id(grad.device_mesh), tuple(grad.placements))
    return None


def _groups(parameters) -> dict:
    groups: dict = defaultdict(list)
    for param in parameters:
        if param.grad is not None:
            groups[_group_key(param.grad)].append(param)
    return groups


def global_grad_norm(parameters, pp_group: dist.ProcessGroup | None) -> torch.Tensor:
    """The global L2 norm of the gradients as a float64 tensor (no host sync: the memory trace's fake
    tensors cannot be read as numbers)."""
    groups = _groups(parameters)
    squares = torch.zeros((), dtype=torch.float64)
    for params in groups.values():
        norm = torch.nn.utils.get_total_norm([p.grad for p in params], norm_type=2.0)
        if isinstance(norm, DTensor):
            norm = norm.full_tensor()
        squares = squares + norm.detach().double().cpu() ** 2
    if pp_group is not None and dist.get_world_size(pp_group) > 1:
        device = next(iter(groups.values()))[0].grad.device if groups else torch.device("cpu")
        total = squares.to(device)
        dist.all_reduce(total, group=pp_group)
        squares = total.cpu()
    return squares.sqrt()


def clip_gradients_with_norm(parameters, max_norm: float, total_norm: torch.Tensor) -> None:
    """Scale every gradient so that their global norm (total_norm) is at most max_norm."""
    for params in _groups(parameters).values():
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, total_norm)


def clip_gradients(parameters, max_norm: float, pp_group: dist.ProcessGroup | None) -> float:
    """Clip in place to max_norm (0 disables clipping) and return the global norm before clipping."""
    parameters = list(parameters)
    total_norm = global_grad_norm(parameters, pp_group)
    if max_norm > 0:
        clip_gradients_with_norm(parameters, max_norm, total_norm)
    return float(total_norm)
