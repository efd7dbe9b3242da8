"""The parallelism section: how the model and the batch are split over ranks."""

from __future__ import annotations

from dataclasses import dataclass

from llm_launch.launcher.config.checks import Checks, Section
from llm_launch.launcher.config.choices import choices

DataParallel = choices("DataParallel", "auto", "ddp", "fsdp", "hsdp", "zero1", "none")


PipelineSchedule = choices("PipelineSchedule", "gpipe", "1f1b", "interleaved_1f1b")


ActivationCheckpointing = choices("ActivationCheckpointing", "none", "selective", "full")


GradientSync = choices("GradientSync", "auto", "every_microbatch", "last_microbatch")


@dataclass
class ParallelismConfig(Section):
    """How the model and the batch are split over ranks: one mesh of dp x tp x pp."""

    tp: int = 1
    """Tensor-parallel degree; must stay within one node and divide the attention heads."""
    pp: int = 1
    """Pipeline-parallel degree; must divide the number of layers."""
    dp: int | None = None
    """Data-parallel degree wanted; None derives it as world / (tp x pp). When set, the node
    count must give exactly this degree, and the error says how many nodes that takes."""
    data_parallel: DataParallel = DataParallel.auto
    """Data-parallel strategy. auto picks the backend's sharding: FSDP2 full shard on GPUs (and CPU),
    ZeRO-1 on Trainium. Explicit: ddp (replicas, gradients all-reduced; both backends), fsdp (FSDP2 full
    shard, GPU), hsdp (shard within a node, replicate across nodes, GPU), zero1 (optimizer state sharded,
    Trainium) or none (no gradient sync: only where dp = 1)."""
    sequence_parallel: bool = False
    """Shard norms and dropout along the sequence (needs tp > 1)."""
    pp_schedule: PipelineSchedule = PipelineSchedule["1f1b"]
    """Pipeline schedule: gpipe, 1f1b or interleaved_1f1b."""
    pp_microbatches: int | None = None
    """Microbatches per pipeline step; None uses the gradient-accumulation count."""
    virtual_pp: int = 1
    """Model chunks per pipeline rank (interleaved_1f1b needs more than 1)."""
    activation_checkpointing: ActivationCheckpointing = ActivationCheckpointing.none
    """Recompute activations in backward: none, selective or full."""
    gradient_sync: GradientSync = GradientSync.auto
    """GPU data parallelism under gradient accumulation: every_microbatch reduce-scatters (FSDP) or all-reduces
    (DDP) each micro-batch's gradients, so FSDP gradients stay sharded (torchtitan's choice); last_microbatch
    skips the sync until the step's last micro-batch: less traffic, but FSDP then holds the stage's whole
    unsharded fp32 gradients on every rank while it accumulates (the plan counts them). auto (the default):
    last_microbatch for ddp, whose gradients are whole on every rank anyway, every_microbatch for fsdp/hsdp."""
    kv_replicator: int | None = None
    """How many times each KV head is replicated so that kv_heads x kv_replicator = tp when tp exceeds
    the KV heads (Trainium). None derives it from the model and tp (1 on GPUs)."""

    def own_problems(self, checks: Checks) -> None:
        checks.at_least(1, tp=self.tp, pp=self.pp, virtual_pp=self.virtual_pp, dp=self.dp,
                        pp_microbatches=self.pp_microbatches, kv_replicator=self.kv_replicator)
        interleaved = self.pp_schedule == PipelineSchedule["interleaved_1f1b"]
        if interleaved and self.virtual_pp < 2:
            checks.error("virtual_pp", "interleaved_1f1b needs virtual_pp of 2 or more")
        if self.virtual_pp > 1 and not interleaved:
            checks.error("pp_schedule", f"virtual_pp={self.virtual_pp} needs pp_schedule=interleaved_1f1b")
        if self.sequence_parallel and self.tp == 1:
            checks.error("sequence_parallel", "needs tp > 1; set parallelism.tp or sequence_parallel=false")
        if self.virtual_pp > 1 and self.pp == 1:
            checks.error("virtual_pp", f"{self.virtual_pp} virtual stages need a pipeline; set parallelism.pp > 1 "
                         "or virtual_pp=1")
