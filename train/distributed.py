"""Joining torchrun's process group and leaving it, for every entrypoint and backend."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def start_process_group(use_cuda: bool) -> torch.device:
    """Join torchrun's process group: nccl on this rank's GPU, or gloo on the CPU; returns the device."""
    rank = int(os.environ.get("RANK", 0))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device, backend = torch.device("cuda", local_rank), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world,
                                device_id=device if device.type == "cuda" else None)
    return device



def shutdown() -> None:
    """Tear the process group down in an orderly way (every rank, after a final barrier)."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
