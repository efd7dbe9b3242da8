"""Which engine trains a job, and the torch engine's device table (torch-free: the launcher shows it, the engine uses it).

Engines, by instance (engine_of):

* "torch": the one torch engine (train/gpu/: FSDP2, DTensor TP/SP, pipelining, DCP) on NVIDIA GPUs, on CPUs, and on
  Trainium 2 and 3 through TorchNeuron, AWS's native PyTorch backend (device "neuron", process group "neuron",
  torch.compile backend "neuron"; public Beta since Neuron 2.33, Trn2 and Trn3 only:
  https://awsdocs-neuron.readthedocs-hosted.com/en/latest/torch/index.html).
* "nxd": the legacy neuronx-distributed backend on PyTorch/XLA (train/neuron/), for Trainium 1, which TorchNeuron does
  not support. Neuron 2.30 ended PyTorch/XLA for training and NxD training is end of support:
  https://awsdocs-neuron.readthedocs-hosted.com/en/latest/about-neuron/announcements/neuron2.x/announce-no-support-pytorch-xla-training.html

On Trainium, neuron.stack picks between them: auto is resolved at composition (native on trn2/trn3, nxd on trn1), so
job.yaml and the plan hold the concrete stack; validation refuses native on trn1.

The device table (DEVICES) holds everything the torch engine does differently per device, so the engine's code has no
device-specific branches of its own: device type, process-group backend, compile backend and options, whether memory
statistics need a synchronize first, and the optimizer kernel. Facts on the neuron row:
https://awsdocs-neuron.readthedocs-hosted.com/en/latest/torch/guides/torch-distributed.html (device and backend),
https://awsdocs-neuron.readthedocs-hosted.com/en/latest/torch/compile/reference-torch-compile.html (dynamic=True is
rejected and each new shape recompiles; fullgraph=True recommended),
https://awsdocs-neuron.readthedocs-hosted.com/en/latest/torch/guides/memory-profiling-guide.html (the allocator is
asynchronous: torch.neuron.synchronize() before any memory statistic).
"""

from __future__ import annotations

from dataclasses import dataclass

from llm_launch.launcher.config.instance import LNC_ACCELERATORS
from llm_launch.launcher.config.neuron import NeuronStack
from llm_launch.launcher.config.schema import JobConfig

TORCH_ENGINE = "torch"
NXD_ENGINE = "nxd"
NEURON_ON_CPU_ENV = "LLM_LAUNCH_NEURON_ON_CPU"
"""Tests only: a CPU job takes the neuron row's code path, computing on CPU with gloo (llm_launch.train.devices)."""
NATIVE_NEURON_ACCELERATORS = LNC_ACCELERATORS
"""Trainium generations TorchNeuron supports (Trn2, Trn3); trn1 is not among them."""


@dataclass(frozen=True)
class DeviceKind:
    """How the torch engine runs on one kind of device."""

    name: str
    """Row name: cuda, neuron or cpu."""
    torch_device: str
    """torch.device type the ranks compute on."""
    process_group: str
    """torch.distributed backend of the ranks' process group."""
    compile_backend: str
    """torch.compile backend (training.compile)."""
    fixed_shapes: bool
    """Compile with dynamic=False: a backend that rejects dynamic shapes and recompiles per new shape."""
    fullgraph: bool
    """Compile with fullgraph=True (a graph break is an error instead of a silent split)."""
    sync_before_memory: bool
    """Synchronize the device before reading its memory statistics (an asynchronous allocator)."""
    fused_adamw: bool
    """AdamW's fused kernel exists on this device (else the foreach implementation runs)."""
    one_device_per_local_rank: bool
    """Each rank selects device <local rank> itself (CUDA); otherwise the runtime places each process."""


DEVICES: dict[str, DeviceKind] = {
    "cuda": DeviceKind("cuda", "cuda", "nccl", "inductor", fixed_shapes=False, fullgraph=False,
                       sync_before_memory=False, fused_adamw=True, one_device_per_local_rank=True),
    # TorchNeuron: fused/foreach AdamW kernels are not confirmed in its docs, so the per-tensor-list (foreach)
    # path runs; the runtime gives each torchrun process its logical NeuronCore (the vendor's example uses
    # torch.device("neuron") with no index).
    "neuron": DeviceKind("neuron", "neuron", "neuron", "neuron", fixed_shapes=True, fullgraph=True,
                         sync_before_memory=True, fused_adamw=False, one_device_per_local_rank=False),
    "cpu": DeviceKind("cpu", "cpu", "gloo", "inductor", fixed_shapes=False, fullgraph=False,
                      sync_before_memory=False, fused_adamw=True, one_device_per_local_rank=False),
}


def is_trainium(job: JobConfig) -> bool:
    """Whether the job runs on Trainium hardware (trn1, trn1n, trn2, trn3), whichever stack trains it."""
    return job.instance.accelerator.startswith("trainium")


def default_stack(accelerator: str) -> NeuronStack:
    """What neuron.stack=auto becomes on an accelerator: native on trn2/trn3, nxd on trn1."""
    return NeuronStack.native if accelerator in NATIVE_NEURON_ACCELERATORS else NeuronStack.nxd


def resolve_stack(job: JobConfig) -> NeuronStack:
    """The concrete neuron.stack on Trainium (auto resolved); GPU and CPU jobs keep the value as written."""
    stack = job.neuron.stack
    if stack == NeuronStack.auto and is_trainium(job):
        return default_stack(job.instance.accelerator)
    return NeuronStack(stack)


def engine_of(job: JobConfig) -> str:
    """torch (GPUs, CPUs, Trainium on the native stack) or nxd (Trainium on the legacy stack)."""
    return NXD_ENGINE if is_trainium(job) and resolve_stack(job) == NeuronStack.nxd else TORCH_ENGINE


def uses_nxd(job: JobConfig) -> bool:
    """Whether the NxD (PyTorch/XLA) backend trains the job."""
    return engine_of(job) == NXD_ENGINE


def native_neuron(job: JobConfig) -> bool:
    """Whether the torch engine trains the job on TorchNeuron's neuron device."""
    return is_trainium(job) and not uses_nxd(job)


def device_kind_of(job: JobConfig) -> DeviceKind | None:
    """The torch engine's device row for the job's instance; None where NxD trains it."""
    if uses_nxd(job):
        return None
    if native_neuron(job):
        return DEVICES["neuron"]
    return DEVICES["cuda"] if job.instance.accelerator == "nvidia" else DEVICES["cpu"]


def engine_summary(job: JobConfig) -> dict[str, str | None]:
    """What the plan and job.yaml readers see: engine, stack, device, process-group and compile backends."""
    kind = device_kind_of(job)
    return {"engine": engine_of(job), "neuron_stack": str(resolve_stack(job)) if is_trainium(job) else None,
            "device": kind.torch_device if kind else "xla", "process_group": kind.process_group if kind else "xla",
            "compile_backend": kind.compile_backend if kind else "neuronx-cc (XLA)"}
