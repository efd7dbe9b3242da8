"""What the Neuron backend needs at run time, and one clear line when it is missing."""

from __future__ import annotations

import importlib

from llm_launch.train.errors import JobError

NEURON_IMAGE = ("the AWS Neuron training DLC (public.ecr.aws/neuron/pytorch-training-neuronx, "
                "SDK 2.30 or earlier for NxDT), or a Trainium host with the Neuron SDK")
REQUIRED_MODULES = ("torch_xla", "neuronx_distributed")


class NeuronUnavailable(JobError):
    """neuronx_distributed or torch_xla cannot be imported here."""


def require_neuron() -> None:
    """Raise NeuronUnavailable naming what is missing and where it is installed."""
    missing = []
    for name in REQUIRED_MODULES:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            missing.append(f"{name} ({exc.name or name} not importable)")
    if missing:
        raise NeuronUnavailable(f"the Trainium backend needs {' and '.join(missing)}; run this job in {NEURON_IMAGE}")
