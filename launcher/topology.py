"""Ranks, world size and the data-parallel layout of a job, from its config alone."""

from __future__ import annotations

import math
from dataclasses import dataclass

from llm_launch.launcher.config.instance import LNC_ACCELERATORS
from llm_launch.launcher.config.schema import InstanceConfig, JobConfig

DEFAULT_TRN2_LNC = 2


def logical_core_config(instance: InstanceConfig) -> int:
    """LNC in force: trn2 and trn3 group physical cores (default 2); every other kind uses 1."""
    if instance.accelerator in LNC_ACCELERATORS:
        return instance.logical_core_config or DEFAULT_TRN2_LNC
    return 1


def ranks_per_accelerator(instance: InstanceConfig) -> int:
    """Ranks that share one chip: its (logical) NeuronCores on Trainium, 1 on GPUs."""
    return max(1, instance.cores_per_accelerator // logical_core_config(instance))


def catalog_ranks_per_node(instance: InstanceConfig) -> int:
    """One rank per GPU, per (logical) NeuronCore, or per CPU worker process."""
    cores = instance.accelerators_per_node * instance.cores_per_accelerator
    return cores // logical_core_config(instance)


@dataclass(frozen=True)
class Topology:
    """How ranks split into data-, tensor- and pipeline-parallel groups."""

    num_nodes: int
    """Nodes in the job."""
    ranks_per_node: int
    """Processes per node (torchrun --nproc_per_node)."""
    tp: int
    """Tensor-parallel degree."""
    pp: int
    """Pipeline-parallel degree."""

    @property
    def world_size(self) -> int:
        """All ranks of the job."""
        return self.num_nodes * self.ranks_per_node

    @property
    def model_parallel(self) -> int:
        """Ranks holding one copy of the model: tp x pp."""
        return self.tp * self.pp

    @property
    def dp(self) -> int:
        """Data-parallel replicas: world / (tp x pp), rounded down (validation rejects a remainder)."""
        return max(1, self.world_size // self.model_parallel)


def topology_of(job: JobConfig) -> Topology:
    """The topology a job asks for, with ranks per node from the override or the catalog."""
    ranks = job.trainer.nproc_per_node or catalog_ranks_per_node(job.instance)
    return Topology(job.trainer.num_nodes, ranks, job.parallelism.tp, job.parallelism.pp)


def data_parallel_split(data_parallel: str, topo: Topology) -> tuple[int, int]:
    """(replicate, shard) degrees of data parallelism: the one rule the plan and the GPU engine's mesh share.

    fsdp and zero1 shard over every data-parallel rank; ddp and none replicate. hsdp shards over
    the data-parallel ranks that share a node and replicates across the rest: the mesh is
    (pp, replicate, shard, tp) with tp innermost, so shard x tp consecutive ranks must fit in a
    node, and the shard degree is gcd(dp, ranks per node / tp). On one node hsdp is fsdp.
    """
    dp = topo.dp
    if data_parallel in ("fsdp", "zero1"):
        return 1, dp
    if data_parallel == "hsdp":
        shard = math.gcd(dp, max(1, topo.ranks_per_node // topo.tp))
        return dp // shard, shard
    return dp, 1


@dataclass(frozen=True)
class Layout:
    """One parallel layout of a job: its topology and every choice the memory estimate and suggest read."""

    topology: Topology
    """Nodes, ranks per node, tp and pp."""
    data_parallel: str
    """parallelism.data_parallel."""
    virtual_pp: int = 1
    """parallelism.virtual_pp."""
    pp_schedule: str = "1f1b"
    """parallelism.pp_schedule."""
    pp_microbatches: int | None = None
    """parallelism.pp_microbatches (None: the gradient-accumulation count)."""
    sequence_parallel: bool = False
    """parallelism.sequence_parallel."""
    activation_checkpointing: str = "none"
    """parallelism.activation_checkpointing."""
    gradient_sync: str = "every_microbatch"
    """parallelism.gradient_sync."""
    micro_batch_size: int = 1
    """training.micro_batch_size."""

    def overrides(self) -> str:
        """The command-line overrides that select this layout."""
        topo = self.topology
        parts = [f"trainer.num_nodes={topo.num_nodes}", f"parallelism.tp={topo.tp}", f"parallelism.pp={topo.pp}"]
        if topo.pp > 1:
            parts += [f"parallelism.virtual_pp={self.virtual_pp}", f"parallelism.pp_schedule={self.pp_schedule}"]
        parts += [f"parallelism.data_parallel={self.data_parallel}",
                  f"parallelism.sequence_parallel={str(self.sequence_parallel).lower()}",
                  f"parallelism.activation_checkpointing={self.activation_checkpointing}",
                  f"parallelism.gradient_sync={self.gradient_sync}",
                  f"training.micro_batch_size={self.micro_batch_size}"]
        return " ".join(parts)


def layout_of(job: JobConfig) -> Layout:
    """The layout a job asks for."""
    par = job.parallelism
    return Layout(topology_of(job), par.data_parallel, par.virtual_pp, par.pp_schedule, par.pp_microbatches,
                  par.sequence_parallel, par.activation_checkpointing, par.gradient_sync,
                  job.training.micro_batch_size)
