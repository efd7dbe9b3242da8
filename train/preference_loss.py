"""Preference-tuning losses over per-sequence log-probabilities (docs/dpo.md gives the formulas).

Inputs are the summed (or, with length normalisation, mean) log-probabilities of the response
tokens of each chosen and rejected sequence, under the policy and under the reference model.
With h = (policy_chosen - reference_chosen) - (policy_rejected - reference_rejected):

  sigmoid (DPO, https://arxiv.org/abs/2305.18290):   -log sigmoid(beta h)
  label smoothing eps (conservative DPO, https://ericmitchell.ai/cdpo.pdf):
                                                     -(1 - eps) log sigmoid(beta h) - eps log sigmoid(-beta h)
  ipo (https://arxiv.org/abs/2310.12036):            (h - 1 / (2 beta))^2

Each pair's loss weighs the same; the functions return per-pair values and the caller sums them
and divides by the pairs of the global batch, as train/loss.py does with tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from llm_launch.train.loss import IGNORE

PREFERENCE_LOSSES = ("sigmoid", "ipo")


@dataclass(frozen=True)
class PairLogps:
    """Per-pair log-probabilities of the response tokens, [pairs] each (fp32)."""

    policy_chosen: torch.Tensor
    policy_rejected: torch.Tensor
    reference_chosen: torch.Tensor
    reference_rejected: torch.Tensor


def sequence_logps(logits: torch.Tensor, targets: torch.Tensor, *, mean: bool) -> torch.Tensor:
    """Log-probability of each row's target tokens (IGNORE skipped): summed, or averaged with mean=True."""
    learned = targets != IGNORE
    safe = targets.masked_fill(~learned, 0)
    token_logps = torch.gather(F.log_softmax(logits.float(), dim=-1), 2, safe.unsqueeze(-1)).squeeze(-1)
    summed = (token_logps * learned).sum(-1)
    return summed / learned.sum(-1).clamp(min=1) if mean else summed


def preference_losses(logps: PairLogps, *, loss: str, beta: float, label_smoothing: float = 0.0) -> torch.Tensor:
    """Per-pair loss, [pairs]."""
    h = (logps.policy_chosen - logps.reference_chosen) - (logps.policy_rejected - logps.reference_rejected)
    if loss == "sigmoid":
        return -(1 - label_smoothing) * F.logsigmoid(beta * h) - label_smoothing * F.logsigmoid(-beta * h)
    if loss == "ipo":
        return (h - 1 / (2 * beta)) ** 2
    raise ValueError(f"unknown preference loss {loss!r}; use one of {', '.join(PREFERENCE_LOSSES)}")


def preference_sums(logps: PairLogps, *, beta: float) -> dict[str, torch.Tensor]:
    """Sums over this batch's pairs of the figures logged per step (divide by the pairs to get means).

    rewards: beta x (policy - reference) log-ratio of each response; accuracy: chosen reward above rejected.
    """
    chosen = beta * (logps.policy_chosen - logps.reference_chosen)
    rejected = beta * (logps.policy_rejected - logps.reference_rejected)
    return {
        "rewards_chosen": chosen.sum(), "rewards_rejected": rejected.sum(), "reward_margin": (chosen - rejected).sum(),
        "reward_accuracy": (chosen > rejected).float().sum(),
        "logps_chosen": logps.policy_chosen.sum(), "logps_rejected": logps.policy_rejected.sum(),
        "ref_logps_chosen": logps.reference_chosen.sum(), "ref_logps_rejected": logps.reference_rejected.sum(),
    }
