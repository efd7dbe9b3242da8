"""Pipeline schedules over the pp mesh dimension (torch.distributed.pipelining).

The loss is summed per micro-batch and scaled by the step's own factor (see llm_launch.train.loss), so
schedules run with scale_grads=False and the step sets the factor before each call.
"""

from __future__ import annotations

import torch
from llm_launch.train.gpu.mesh import Dist
from llm_launch.train.loss import summed_cross_entropy
from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe, ScheduleInterleaved1F1B


class ScaledLoss:
    """The pipeline's loss function: summed cross-entropy times a factor set per step."""

    def __init__(self):
        self.scale = 1.0

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return summed_cross_entropy(logits, targets) * self.scale


def build_schedule(modules: list[torch.nn.Module], stage_ids: list[int], ctx: Dist, *, schedule: str,
                   microbatches: int, virtual_pp: int, loss: ScaledLoss):
    """The schedule that runs this rank's stages."""
    num_stages = ctx.pp_size * virtual_pp
    group = ctx.mesh.get_group("pp")
    stages = [PipelineStage(module, index, num_stages, ctx.device, group=group)
              for module, index in zip(modules, stage_ids, strict=True)]
    if schedule == "interleaved_1f1b":
        return ScheduleInterleaved1F1B(stages, microbatches, loss_fn=loss, scale_grads=False)
    kind = ScheduleGPipe if schedule == "gpipe" else Schedule1F1B
    return kind(stages[0], microbatches, loss_fn=loss, scale_grads=False)
