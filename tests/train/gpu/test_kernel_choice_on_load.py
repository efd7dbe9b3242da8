"""A checkpoint written in another layout must not change the optimizer's kernel choice when it loads.

Optimizer.load_state_dict restores every param_group entry, `fused` and `foreach` included. A checkpoint written where
every parameter was a DTensor (fused AdamW) and resumed on fewer nodes, where some parameters are plain tensors
(train/gpu/optimizer.py then picks the single-tensor kernel), failed at its first step with "aten._fused_adamw_
got mixed torch.Tensor and DTensor" (found by the elastic pod test, tests/launcher/container/test_pods_elastic.py).
"""

from __future__ import annotations

import torch
from llm_launch.train.gpu.checkpoint import kernel_choice_kept


def _adamw(**kernel) -> torch.optim.AdamW:
    weight = torch.nn.Parameter(torch.ones(2))
    weight.grad = torch.ones(2)
    opt = torch.optim.AdamW([weight], lr=0.1, **kernel)
    opt.step()
    return opt


def test_loading_keeps_the_kernel_this_layout_chose():
    written = _adamw(foreach=True).state_dict()  # the other layout's choice
    here = _adamw(foreach=False)
    with kernel_choice_kept(here):
        here.load_state_dict(written)
    assert here.param_groups[0]["foreach"] is False
    assert here.param_groups[0]["lr"] == 0.1 and here.state  # everything else is the checkpoint's


def test_without_it_the_checkpoint_would_choose():
    written = _adamw(foreach=True).state_dict()
    here = _adamw(foreach=False)
    here.load_state_dict(written)
    assert here.param_groups[0]["foreach"] is True
