"""The torch engine's device calls, from the device table (llm_launch.launcher.devices.DEVICES).

Everything the engine does that differs by device goes through here: which device a rank computes on, the process
group it joins, torch.compile's backend and options, synchronizing before memory statistics, the device's peak
memory, and AdamW's kernel. CUDA, Neuron (TorchNeuron) and CPU rows differ only in the table; torch.<device> (torch.cuda,
torch.neuron) holds the calls, as TorchNeuron mirrors torch.cuda
(https://awsdocs-neuron.readthedocs-hosted.com/en/latest/torch/reference/api/torch-neuron-module.html).

Tests run the neuron row's code path on CPU with gloo (NEURON_ON_CPU_ENV=1, a local CPU job): the same module,
parallelize, optimizer, checkpoint and memory calls, with the neuron row's options (fixed-shape full-graph compile,
foreach AdamW, synchronize before memory), on the CPU device. That is the method of AWS's own distributed tutorial,
which runs one script on CPU with gloo and on Neuron and compares them
(https://awsdocs-neuron.readthedocs-hosted.com/en/latest/torch/tutorials/tutorial-torch-distributed.html).
"""

from __future__ import annotations

import os
from dataclasses import replace

import torch
from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.devices import DEVICES, NEURON_ON_CPU_ENV, DeviceKind, device_kind_of


def neuron_on_cpu() -> DeviceKind:
    """The neuron row with the CPU's device, process group and compile backend (inductor: neuronx-cc needs a Neuron
    device); every other option is the neuron row's."""
    cpu = DEVICES["cpu"]
    return replace(DEVICES["neuron"], torch_device=cpu.torch_device, process_group=cpu.process_group,
                   compile_backend=cpu.compile_backend)


def runtime_device_kind(job: JobConfig) -> DeviceKind:
    """The device row this rank runs: the job's, except that a CPU job on a host with CUDA uses its GPUs (as
    `llm-launch` on a GPU workstation always has) and that NEURON_ON_CPU_ENV swaps in the neuron row's CPU stand-in."""
    kind = device_kind_of(job)
    if kind is None:
        raise ValueError(f"{job.instance.name} trains on NxD (neuron.stack={job.neuron.stack}), not the torch engine")
    if kind.name == "cpu" and os.environ.get(NEURON_ON_CPU_ENV) == "1":
        return neuron_on_cpu()
    if kind.name == "cpu" and torch.cuda.is_available():
        return DEVICES["cuda"]
    return kind


def device_module(device: torch.device):
    """torch.cuda, torch.neuron, ... for an accelerator device; None for the CPU."""
    return None if device.type == "cpu" else getattr(torch, device.type)


def rank_device(kind: DeviceKind) -> torch.device:
    """This rank's device: cuda:<local rank> (selected here), the runtime's NeuronCore, or the CPU."""
    if kind.one_device_per_local_rank:
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        getattr(torch, kind.torch_device).set_device(local_rank)
        return torch.device(kind.torch_device, local_rank)
    return torch.device(kind.torch_device)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (nothing to wait for on the CPU)."""
    module = device_module(device)
    if module is not None:
        module.synchronize()


def peak_memory_bytes(kind: DeviceKind, device: torch.device) -> float | None:
    """The allocator's peak so far on an accelerator (after a synchronize where the row asks for one); None on CPU."""
    if kind.sync_before_memory:
        synchronize(device)
    module = device_module(device)
    if module is None:
        return None
    return float(module.max_memory_allocated(device))


def compile_options(kind: DeviceKind) -> dict:
    """torch.compile keyword arguments for the row: its backend, and dynamic=False / fullgraph=True where it needs them
    (TorchNeuron rejects dynamic=True and recommends fullgraph:
    https://awsdocs-neuron.readthedocs-hosted.com/en/latest/torch/compile/reference-torch-compile.html)."""
    options: dict = {"backend": kind.compile_backend}
    if kind.fixed_shapes:
        options["dynamic"] = False
    if kind.fullgraph:
        options["fullgraph"] = True
    return options


def ddp_device_ids(device: torch.device) -> list[int] | None:
    """DistributedDataParallel's device_ids: the rank's indexed accelerator, else None (CPU, runtime-placed devices)."""
    return None if device.type == "cpu" or device.index is None else [device.index]
