"""Next-token targets and the summed cross-entropy every layout and task shares.

Targets are the inputs shifted left by one, with IGNORE at the last position and wherever
a loss mask is 0 (SFT prompts, padding). The loss of a micro-batch is a sum over its target
tokens; the step divides by the target tokens of the whole global batch, so every token
weighs the same whatever the layout, micro-batching or masking.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100


def next_token_targets(input_ids: torch.Tensor, loss_mask: torch.Tensor | None = None) -> torch.Tensor:
    """targets[:, t] = input_ids[:, t + 1] where position t + 1 is a learned token, else IGNORE."""
    targets = torch.full_like(input_ids, IGNORE)
    targets[:, :-1] = input_ids[:, 1:]
    if loss_mask is not None:
        targets[:, :-1][loss_mask[:, 1:] == 0] = IGNORE
    return targets


def unshifted_labels(input_ids: torch.Tensor, loss_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Labels for models that shift inside (transformers' convention): the ids, IGNORE where the mask is 0."""
    return input_ids if loss_mask is None else input_ids.masked_fill(loss_mask == 0, IGNORE)


def summed_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sum of the token losses over the targets that are not IGNORE (fp32)."""
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE, reduction="sum")


def target_count(targets: torch.Tensor) -> int:
    return int((targets != IGNORE).sum())
