"""Preference losses and rewards against the published formulas, written out here in plain Python.

TRL (1.16) computes its DPO loss inside DPOTrainer._compute_loss, tied to a constructed trainer, so
the independent computation is the papers' formulas: DPO (https://arxiv.org/abs/2305.18290, eq. 7),
conservative DPO (https://ericmitchell.ai/cdpo.pdf) and IPO (https://arxiv.org/abs/2310.12036, eq. 17).
"""

from __future__ import annotations

import math

import pytest
import torch
from llm_launch.train.loss import IGNORE
from llm_launch.train.preference_loss import PairLogps, preference_losses, preference_sums, sequence_logps

POLICY_CHOSEN = [-12.0, -30.5, -7.25, -50.0]
POLICY_REJECTED = [-14.0, -29.0, -9.0, -49.0]
REF_CHOSEN = [-13.0, -31.0, -7.0, -52.0]
REF_REJECTED = [-13.5, -30.0, -8.0, -48.5]


def logps() -> PairLogps:
    return PairLogps(*(torch.tensor(v, dtype=torch.float64) for v in
                       (POLICY_CHOSEN, POLICY_REJECTED, REF_CHOSEN, REF_REJECTED)))


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def margins() -> list[float]:
    return [(pc - rc) - (pr - rr) for pc, pr, rc, rr in zip(POLICY_CHOSEN, POLICY_REJECTED, REF_CHOSEN, REF_REJECTED,
                                                            strict=True)]


@pytest.mark.parametrize("beta", [0.1, 0.5])
@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_sigmoid_and_conservative_dpo(beta, eps):
    expected = [-(1 - eps) * log_sigmoid(beta * h) - eps * log_sigmoid(-beta * h) for h in margins()]
    got = preference_losses(logps(), loss="sigmoid", beta=beta, label_smoothing=eps)
    assert got.tolist() == pytest.approx(expected, rel=1e-12)


def test_ipo():
    beta = 0.1
    expected = [(h - 1 / (2 * beta)) ** 2 for h in margins()]
    assert preference_losses(logps(), loss="ipo", beta=beta).tolist() == pytest.approx(expected, rel=1e-12)


def test_rewards_margin_and_accuracy():
    beta = 0.1
    sums = preference_sums(logps(), beta=beta)
    chosen = [beta * (p - r) for p, r in zip(POLICY_CHOSEN, REF_CHOSEN, strict=True)]
    rejected = [beta * (p - r) for p, r in zip(POLICY_REJECTED, REF_REJECTED, strict=True)]
    assert float(sums["rewards_chosen"]) == pytest.approx(sum(chosen))
    assert float(sums["rewards_rejected"]) == pytest.approx(sum(rejected))
    assert float(sums["reward_margin"]) == pytest.approx(sum(chosen) - sum(rejected))
    assert float(sums["reward_accuracy"]) == sum(c > r for c, r in zip(chosen, rejected, strict=True))
    assert float(sums["logps_chosen"]) == pytest.approx(sum(POLICY_CHOSEN))
    assert float(sums["ref_logps_rejected"]) == pytest.approx(sum(REF_REJECTED))


def test_unknown_loss_is_named():
    with pytest.raises(ValueError, match="'hinge'"):
        preference_losses(logps(), loss="hinge", beta=0.1)


def test_sequence_logps_count_only_response_tokens():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    targets = torch.tensor([[IGNORE, IGNORE, 3, 4, IGNORE], [IGNORE, 1, 2, 6, 0]])
    expected = []
    for row in range(2):
        total, count = 0.0, 0
        for t in range(5):
            if targets[row, t] != IGNORE:
                row_logits = logits[row, t].tolist()
                norm = math.log(sum(math.exp(v) for v in row_logits))
                total += row_logits[int(targets[row, t])] - norm
                count += 1
        expected.append((total, total / count))
    summed = sequence_logps(logits, targets, mean=False)
    averaged = sequence_logps(logits, targets, mean=True)
    assert summed.tolist() == pytest.approx([e[0] for e in expected], rel=1e-5)
    assert averaged.tolist() == pytest.approx([e[1] for e in expected], rel=1e-5)
