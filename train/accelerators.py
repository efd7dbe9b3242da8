"""A job planned for accelerators refuses to start on a node that shows this rank none.

Without the check, a GPU job whose scheduler gave it no GPU (a Slurm step without --gpus-per-node,
a container without the NVIDIA runtime) would fall back to CPU and train there without a word.
Every rank runs it first thing, so every rank ends with the same one line and a non-zero exit.
"""

from __future__ import annotations

import glob
import importlib.util
import os

from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.devices import NEURON_ON_CPU_ENV, native_neuron
from llm_launch.train.errors import JobError

NEURON_DEVICES = "/dev/neuron*"
"""Device files of the Neuron driver, one per Neuron device
(https://awsdocs-neuron.readthedocs-hosted.com/en/latest/containers/tutorials/build-run-neuron-container.html)."""


def visible_devices_note() -> str:
    """What the scheduler exported to this rank, for the error line."""
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    return "CUDA_VISIBLE_DEVICES is not set" if value is None else f"CUDA_VISIBLE_DEVICES={value!r}"


NATIVE_IMAGE_HINT = ("TorchNeuron (torch-neuronx 2.13/2.14 for torch 2.13/2.14, Neuron 2.33+): build "
                     "docker/Dockerfile.neuron-native or use the Neuron DLAMI's PyTorch environment")


def native_neuron_devices() -> int:
    """Logical NeuronCores torch sees through TorchNeuron (0 without the package or a device)."""
    import torch

    if importlib.util.find_spec("torch_neuronx") is None:
        return 0
    import torch_neuronx  # noqa: F401  (registers the neuron device; torch also autoloads it)

    module = getattr(torch, "neuron", None)
    return module.device_count() if module is not None and module.is_available() else 0


def neuron_stack_present() -> bool:
    """torch-xla is installed and NxD's CPU mode (its tests) is off; without the stack the Neuron backend
    itself names what is missing."""
    return os.environ.get("NXD_CPU_MODE") != "1" and importlib.util.find_spec("torch_xla") is not None


def missing_cuda_fix(local_rank: int) -> str:
    """Why a rank sees too few CUDA devices, and the fix: a torch built without CUDA, GPUs the scheduler gave that
    CUDA cannot open, or GPUs never requested."""
    import torch

    if torch.version.cuda is None:  # a CPU-only (or ROCm) build: torch.cuda finds nothing whatever the node has
        return (f"this torch ({torch.__version__}) is built without CUDA; install a CUDA build of torch where the job "
                "runs (https://pytorch.org/get-started/locally/) or run it in the GPU image")
    visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    if len(visible) > local_rank:
        return "the scheduler gave this rank GPUs that CUDA cannot open; check the node's NVIDIA driver (nvidia-smi)"
    return "request the GPUs from the scheduler (Slurm: --gpus-per-node) or pick a CPU instance"


def require_accelerators(job: JobConfig) -> None:
    """Raise JobError unless this rank can reach the accelerator its instance type promises."""
    kind, name = job.instance.accelerator, job.instance.name
    rank = os.environ.get("RANK", "0")
    if kind == "nvidia":
        import torch

        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count <= local_rank:
            raise JobError(f"instance {name} has {job.instance.accelerators_per_node} NVIDIA GPU(s) per node but rank "
                           f"{rank} (local rank {local_rank}) sees {count} CUDA device(s) ({visible_devices_note()}); "
                           f"{missing_cuda_fix(local_rank)}")
    elif native_neuron(job):
        if os.environ.get(NEURON_ON_CPU_ENV) == "1":
            return  # tests: the neuron row's code path on CPU (llm_launch.train.devices)
        if importlib.util.find_spec("torch_neuronx") is None:
            raise JobError(f"instance {name} trains on TorchNeuron (neuron.stack=native) and this environment lacks "
                           f"torch-neuronx; use {NATIVE_IMAGE_HINT}")
        if native_neuron_devices() == 0:
            raise JobError(f"instance {name} has Neuron devices but rank {rank} sees none through torch-neuronx "
                           f"({NEURON_DEVICES}: {len(glob.glob(NEURON_DEVICES))}); run on a trn2/trn3 node (a container "
                           "needs --device=/dev/neuron*) or pick a CPU instance")
    elif kind.startswith("trainium") and neuron_stack_present() and not glob.glob(NEURON_DEVICES):
        raise JobError(f"instance {name} has Neuron devices but rank {rank} sees no {NEURON_DEVICES}; run on a "
                       "Trainium node (a container needs --device=/dev/neuron*) or pick a CPU instance")
