"""Preference tuning on the GPU engine: policy and reference log-probabilities of each pair, the pair loss.

A micro-batch of pairs arrives as ids and masks [pairs, 2, seq_len] (llm_launch.train.data.dpo.PairRows); it runs
as one [2 x pairs, seq_len] batch, chosen rows first. The reference is the policy's base model with the
LoRA adapters off, or, without LoRA, a frozen copy built and sharded like the policy. Each pair weighs
the same: a micro-batch's summed pair losses are scaled by dp / (pairs in the global batch).
"""

from __future__ import annotations

import contextlib

import torch
from llm_launch.launcher.config.schema import JobConfig
from llm_launch.train.data.loader import Rows
from llm_launch.train.gpu.engine import Engine
from llm_launch.train.gpu.lora import adapters_disabled
from llm_launch.train.gpu.mesh import Dist
from llm_launch.train.loss import next_token_targets
from llm_launch.train.preference_loss import PairLogps, preference_losses, preference_sums, sequence_logps

FIGURES = ("rewards_chosen", "rewards_rejected", "reward_margin", "reward_accuracy", "logps_chosen",
           "logps_rejected", "ref_logps_chosen", "ref_logps_rejected")
"""The per-pair means logged with every step and validation (train/preference_loss.py)."""


def pair_batch(rows: Rows) -> tuple[torch.Tensor, torch.Tensor]:
    """[pairs, 2, seq] ids and masks -> ([2 x pairs, seq] ids, next-token targets of the responses), chosen first."""
    ids, mask = rows
    flat_ids = torch.cat([ids[:, 0], ids[:, 1]])
    flat_mask = torch.cat([mask[:, 0], mask[:, 1]])
    return flat_ids, next_token_targets(flat_ids, flat_mask)


class PreferenceObjective:
    """The DPO-family loss of a micro-batch as the engine's objective, with the reference's log-probabilities."""

    def __init__(self, job: JobConfig, ctx: Dist, policy: Engine):
        self.cfg, self.ctx, self.policy = job.training.preference, ctx, policy
        self.reference = None if job.training.lora.enabled else Engine(job, ctx, pipeline_microbatches=1, frozen=True)
        self.sums = torch.zeros(len(FIGURES), dtype=torch.float64, device=ctx.device)
        """This rank's sums of FIGURES over the pairs since prepare(), kept on the device (no sync per micro-batch)."""
        self._references: list[torch.Tensor] = []

    def _reference_context(self):
        return adapters_disabled(self.policy.stages[0]) if self.reference is None else contextlib.nullcontext()

    @torch.no_grad()
    def _reference_logps(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        engine = self.reference or self.policy
        was_training = engine.stages[0].training
        engine.stages[0].eval()
        with self._reference_context(), engine.compute_precision():
            logits = engine.stages[0](inputs.to(self.ctx.device))
        engine.stages[0].train(was_training)
        return sequence_logps(logits, targets.to(self.ctx.device), mean=self.cfg.length_normalized)

    def prepare(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Reference log-probabilities of every micro-batch of the step, before the policy's passes."""
        self._references = [self._reference_logps(inputs, targets) for inputs, targets in batches]
        self.sums = torch.zeros_like(self.sums)

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Summed pair losses of the next micro-batch (the engine calls it once per micro-batch, in order)."""
        reference = self._references.pop(0)
        policy = sequence_logps(logits, targets, mean=self.cfg.length_normalized)
        pairs = len(policy) // 2
        logps = PairLogps(policy[:pairs], policy[pairs:], reference[:pairs], reference[pairs:])
        figures = preference_sums(logps, beta=self.cfg.beta)
        self.sums += torch.stack([figures[name].detach().double() for name in FIGURES])
        return preference_losses(logps, loss=self.cfg.loss, beta=self.cfg.beta,
                                 label_smoothing=self.cfg.label_smoothing).sum()
