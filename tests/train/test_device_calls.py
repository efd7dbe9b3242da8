"""The torch engine's device calls come from the device table: the neuron row compiles with fixed shapes and full graphs,
synchronizes before reading memory and uses foreach AdamW; trn2 jobs get the torch backend, trn1 jobs NxD."""

from __future__ import annotations

import types

import pytest
import torch
from llm_launch.launcher.devices import DEVICES, NEURON_ON_CPU_ENV
from llm_launch.train.backend import BACKENDS, backend_name
from llm_launch.train.devices import compile_options, neuron_on_cpu, peak_memory_bytes, runtime_device_kind
from llm_launch.train.gpu.optimizer import build_optimizer
from llm_launch.train.gpu.parallelize import apply_compile


def test_compile_options_per_row():
    assert compile_options(DEVICES["neuron"]) == {"backend": "neuron", "dynamic": False, "fullgraph": True}
    assert compile_options(DEVICES["cuda"]) == {"backend": "inductor"}
    assert compile_options(neuron_on_cpu()) == {"backend": "inductor", "dynamic": False, "fullgraph": True}


def test_layers_compile_with_the_rows_options(monkeypatch):
    seen = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: seen.append(kwargs) or fn)
    stage = types.SimpleNamespace(model=types.SimpleNamespace(layers=torch.nn.ModuleDict(
        {"0": torch.nn.Linear(2, 2), "1": torch.nn.Linear(2, 2)})))
    apply_compile(stage, DEVICES["neuron"])
    assert seen == [{"backend": "neuron", "dynamic": False, "fullgraph": True}] * 2


def test_backend_and_device_row_by_instance(job_for, monkeypatch):
    trn2, trn1, cpu = job_for("instance=ml.trn2.48xlarge"), job_for("instance=ml.trn1.32xlarge"), job_for()
    assert backend_name(trn2) == "torch" and BACKENDS["torch"].endswith("gpu.backend:TorchBackend")
    assert backend_name(trn1) == "nxd" and BACKENDS["nxd"].endswith("neuron.backend:NeuronBackend")
    assert runtime_device_kind(trn2) == DEVICES["neuron"]
    with pytest.raises(ValueError, match="NxD"):
        runtime_device_kind(trn1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert runtime_device_kind(cpu) == DEVICES["cpu"]
    monkeypatch.setenv(NEURON_ON_CPU_ENV, "1")
    standin = runtime_device_kind(cpu)
    assert (standin.name, standin.torch_device, standin.process_group) == ("neuron", "cpu", "gloo")
    assert not standin.fused_adamw and standin.sync_before_memory and standin.fixed_shapes


def test_memory_is_read_after_a_synchronize_on_neuron(monkeypatch):
    # No Neuron device here: a stand-in torch.neuron module records the order of the calls the engine makes.
    calls = []
    module = types.SimpleNamespace(synchronize=lambda: calls.append("synchronize"),
                                   max_memory_allocated=lambda device: calls.append("max_memory_allocated") or 3 * 2**30)
    monkeypatch.setattr(torch, "neuron", module, raising=False)
    device = types.SimpleNamespace(type="neuron", index=None)  # torch.device("neuron") needs torch-neuronx loaded
    assert peak_memory_bytes(DEVICES["neuron"], device) == 3 * 2**30
    assert calls == ["synchronize", "max_memory_allocated"]
    assert peak_memory_bytes(DEVICES["cpu"], torch.device("cpu")) is None


def test_adamw_kernel_follows_the_row():
    params = [torch.nn.Parameter(torch.zeros(2))]
    assert build_optimizer(params, job_optimizer(), fused=True).defaults["fused"] is True
    assert not build_optimizer(params, job_optimizer(), fused=False).defaults["fused"]


def job_optimizer():
    from llm_launch.launcher.config.schema import OptimizerConfig

    return OptimizerConfig()
