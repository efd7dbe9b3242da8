"""The GPU engine's device mesh (pp x dp_replicate x dp_shard x tp), from torchrun's environment.

The mesh matches the plan: tp is the innermost dimension (ranks of one node), pp the
outermost. Data parallelism is split into a replicate and a shard dimension so that one
mesh serves DDP (replicate only), FSDP (shard only) and HSDP (both).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

from train.distributed import start_process_group

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
    """cuda:<local_rank> on GPU nodes, cpu otherwise."""
    mesh: DeviceMesh
    """The whole mesh, dimensions MESH_DIMS."""
    dp_mesh: DeviceMesh
    """Data-parallel ranks of this process (replicate and shard flattened): same model part, other data."""

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


def dp_split(data_parallel: str, dp: int, num_nodes: int) -> tuple[int, int]:
    """(replicate, shard) degrees of data parallelism for a strategy.

    hsdp shards within a node and replicates across nodes; on one node it is fsdp.
    """
    if data_parallel in ("fsdp", "zero1"):
        return 1, dp
    if data_parallel == "hsdp":
        replicate = num_nodes if num_nodes > 1 and dp % num_nodes == 0 else 1
        return replicate, dp // replicate
    return dp, 1  # ddp, none


def init_distributed(*, dp: int, tp: int, pp: int, data_parallel: str, num_nodes: int) -> Dist:
    """Initialise the process group (nccl on GPUs, gloo on CPU) and the job's mesh."""
    device = start_process_group(torch.cuda.is_available())
    rank, local_rank = dist.get_rank(), int(os.environ.get("LOCAL_RANK", 0))
    world = dist.get_world_size()
    if dp * tp * pp != world:
        raise ValueError(f"job.yaml plans dp={dp} x tp={tp} x pp={pp} = {dp * tp * pp} ranks but torchrun "
                         f"started {world}")
    replicate, shard = dp_split(data_parallel, dp, num_nodes)
    mesh = init_device_mesh(device.type, (pp, replicate, shard, tp), mesh_dim_names=MESH_DIMS)
    dp_mesh = mesh["dp_replicate", "dp_shard"]._flatten("dp")
    return Dist(rank, local_rank, world, device, mesh, dp_mesh)
