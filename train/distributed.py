"""Process group and device mesh of a training job, from torchrun's environment."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh


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
    """The data-parallel mesh (tensor and pipeline dimensions join it with the full engine)."""

    @property
    def is_main(self) -> bool:
        """Rank 0 writes shared files (metrics, markers, exports)."""
        return self.rank == 0


def init_distributed(dp: int) -> Dist:
    """Initialise the process group (nccl on GPUs, gloo on CPU) and a dp-sized mesh."""
    rank = int(os.environ.get("RANK", 0))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device, backend = torch.device("cuda", local_rank), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world, device_id=device
                                if device.type == "cuda" else None)
    if dp != world:
        raise ValueError(f"job.yaml plans dp={dp} but torchrun started {world} ranks")
    mesh = init_device_mesh(device.type, (dp,), mesh_dim_names=("dp",))
    return Dist(rank, local_rank, world, device, mesh)


def shutdown() -> None:
    """Tear the process group down in an orderly way (every rank, after a final barrier)."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
