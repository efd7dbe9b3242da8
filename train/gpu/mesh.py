"""The torch engine's device mesh (pp x dp_replicate x dp_shard x tp), from torchrun's environment.

The mesh matches the plan: tp is the innermost dimension (ranks of one node), pp the
outermost. Data parallelism is split into a replicate and a shard dimension so that one
mesh serves DDP (replicate only), FSDP (shard only) and HSDP (both).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.devices import DEVICES, DeviceKind
from llm_launch.launcher.plan import Plan
from llm_launch.launcher.topology import data_parallel_split, layout_of
from llm_launch.train.devices import runtime_device_kind
from llm_launch.train.distributed import start_process_group
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

MESH_DIMS = ("pp", "dp_replicate", "dp_shard", "tp")


@dataclass(frozen=True)
class Dist:
    """This process's place in the job."""

    rank: int
    """Global rank."""
    local_rank: int
    """Rank on this node."""
    world_size: int
    """All ranks."""
    device: torch.device
    """cuda:<local_rank> on GPU nodes, neuron on Trainium native, cpu otherwise."""
    mesh: DeviceMesh
    """The whole mesh, dimensions MESH_DIMS."""
    dp_mesh: DeviceMesh
    """Data-parallel ranks of this process (replicate and shard flattened): same model part, other data."""
    kind: DeviceKind = DEVICES["cpu"]
    """The device row the engine runs with (compile options, memory statistics, optimizer kernel)."""

    @property
    def is_main(self) -> bool:
        """Rank 0 writes shared files (metrics, markers, exports)."""
        return self.rank == 0

    def size(self, dim: str) -> int:
        return self.mesh.size(MESH_DIMS.index(dim))

    def coordinate(self, dim: str) -> int:
        return self.mesh.get_local_rank(dim)

    @property
    def dp_rank(self) -> int:
        return self.dp_mesh.get_local_rank()

    @property
    def dp_size(self) -> int:
        return self.dp_mesh.size()

    @property
    def pp_rank(self) -> int:
        return self.coordinate("pp")

    @property
    def pp_size(self) -> int:
        return self.size("pp")

    @property
    def tp_size(self) -> int:
        return self.size("tp")


def job_mesh(job: JobConfig, plan: Plan, device: torch.device, kind: DeviceKind | None = None) -> Dist:
    """This process's place in the job's mesh, over the process group already joined.

    The data-parallel split is the plan's (llm_launch.launcher.topology.data_parallel_split), so the memory
    estimate and the engine shard over the same ranks.
    """
    rank, local_rank = dist.get_rank(), int(os.environ.get("LOCAL_RANK", 0))
    world = dist.get_world_size()
    tp, pp, dp = plan.tp, plan.pp, plan.dp
    if dp * tp * pp != world:
        raise ValueError(f"job.yaml plans dp={dp} x tp={tp} x pp={pp} = {dp * tp * pp} ranks but torchrun "
                         f"started {world}")
    replicate, shard = data_parallel_split(job.parallelism.data_parallel, layout_of(job).topology)
    mesh = init_device_mesh(device.type, (pp, replicate, shard, tp), mesh_dim_names=MESH_DIMS)
    dp_mesh = mesh["dp_replicate", "dp_shard"]._flatten("dp")
    return Dist(rank, local_rank, world, device, mesh, dp_mesh, kind or DEVICES["cpu"])


def init_distributed(job: JobConfig, plan: Plan) -> Dist:
    """Join torchrun's process group with the job's device row (nccl on GPUs, neuron on Trainium native, gloo on
    CPU: llm_launch.train.devices) and build the job's mesh."""
    kind = runtime_device_kind(job)
    return job_mesh(job, plan, start_process_group(kind), kind)
