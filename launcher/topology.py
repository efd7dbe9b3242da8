"""Ranks, world size and the data-parallel layout of a job, from its config alone."""

from __future__ import annotations

from dataclasses import dataclass

from launcher.config.schema import InstanceConfig, JobConfig

DEFAULT_TRN2_LNC = 2


def logical_core_config(instance: InstanceConfig) -> int:
    """LNC in force: trn2 groups physical cores (default 2); every other kind uses 1."""
    if instance.accelerator == "trainium2":
        return instance.logical_core_config or DEFAULT_TRN2_LNC
    return 1


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
