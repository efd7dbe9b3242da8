"""Joining torchrun's process group and leaving it, for every entrypoint and backend."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from llm_launch.launcher.devices import DeviceKind
from llm_launch.train.devices import rank_device


def start_process_group(kind: DeviceKind) -> torch.device:
    """Join torchrun's process group with the device row's backend (nccl on this rank's GPU, neuron on its NeuronCore,
    gloo on the CPU); returns the device. The device is bound to the group only where it has an index (CUDA)."""
    rank = int(os.environ.get("RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    device = rank_device(kind)
    if not dist.is_initialized():
        dist.init_process_group(backend=kind.process_group, init_method="env://", rank=rank, world_size=world,
                                device_id=device if device.index is not None else None)
    return device



def shutdown() -> None:
    """Tear the process group down in an orderly way (every rank, after a final barrier)."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
