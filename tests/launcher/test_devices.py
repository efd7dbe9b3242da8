"""The engine and device table by instance: trn2/trn3 train on the torch engine with TorchNeuron's neuron device, trn1
on NxD, GPUs on cuda/nccl and CPUs on cpu/gloo; neuron.stack is resolved at composition and written into job.yaml."""

from __future__ import annotations

import pytest
from cluster_locations import cluster_inputs
from llm_launch.launcher.devices import DEVICES, device_kind_of, engine_of
from llm_launch.launcher.environment import backend_environment
from llm_launch.launcher.jobfile import read_job, write_job
from llm_launch.launcher.report import plan_table
from llm_launch.launcher.suggest import search
from llm_launch.launcher.validate import validate
from rich.console import Console

TRN1_8B = "recipe=llama3_8b_cpt_trn1"


@pytest.mark.parametrize("instance, engine, stack, row", [
    ("ml.trn2.48xlarge", "torch", "native", ("neuron", "neuron", "neuron")),
    ("ml.trn1.32xlarge", "nxd", "nxd", None),
    ("ml.trn1n.32xlarge", "nxd", "nxd", None),
    ("ml.p5.48xlarge", "torch", "auto", ("cuda", "nccl", "inductor")),
    ("cpu", "torch", "auto", ("cpu", "gloo", "inductor")),
])
def test_engine_and_device_row_by_instance(job_for, tmp_path, instance, engine, stack, row):
    job = job_for(TRN1_8B, f"instance={instance}")
    assert (engine_of(job), job.neuron.stack) == (engine, stack)
    kind = device_kind_of(job)
    assert (kind.torch_device, kind.process_group, kind.compile_backend) == row if row else kind is None
    assert read_job(write_job(job, tmp_path / "job.yaml")).neuron.stack == stack  # what the entrypoint reads
    assert f"stack: {stack}" in (tmp_path / "job.yaml").read_text()


def test_trn2_job_asks_for_the_neuron_device_and_the_documented_environment(job_for):
    job = job_for(TRN1_8B, "instance=ml.trn2.48xlarge", "cluster=eks", *cluster_inputs("eks", "cpt"))
    findings, plan = validate(job)
    assert findings.problems == []
    assert (plan.engine, plan.neuron_stack, plan.device, plan.process_group, plan.compile_backend) == (
        "torch", "native", "neuron", "neuron", "neuron")
    assert DEVICES["neuron"].fixed_shapes and DEVICES["neuron"].fullgraph and DEVICES["neuron"].sync_before_memory
    env = backend_environment(job, "/fsx")
    assert env["NEURON_LOGICAL_NC_CONFIG"] == "2" and env["TORCH_NEURONX_NEFF_CACHE_DIR"] == "/fsx/neuron_cache"
    assert not [k for k in env if k.startswith(("XLA_", "NEURON_CC_FLAGS", "NCCL_"))]
    console = Console(record=True, width=200)
    console.print(plan_table(plan))
    assert "torch, neuron.stack=native: device neuron, process group neuron, compile neuron" in console.export_text()
    # tp 8 spans two chips: planned, with TorchNeuron's advice to keep it within one
    assert any(w.startswith("parallelism.tp:") and "tp <= 4" in w for w in map(str, findings.warnings))


def test_nxd_stays_available_on_trn2_with_a_warning(job_for):
    job = job_for(TRN1_8B, "instance=ml.trn2.48xlarge", "neuron.stack=nxd", "parallelism.tp=16")
    findings, plan = validate(job)
    assert findings.problems == [] and plan.engine == "nxd" and plan.data_parallel == "zero1"
    assert any(w.startswith("neuron.stack:") and "end of support" in w for w in map(str, findings.warnings))


def test_suggest_searches_native_layouts_on_trn2(job_for):
    job = job_for(TRN1_8B, "instance=ml.trn2.48xlarge", "plan.min_nodes=1", "plan.max_nodes=2")
    found = search(job)
    assert found
    assert {s.layout.topology.tp for s in found} <= {1, 2, 4}  # within one chip at LNC=2
    assert {s.layout.data_parallel for s in found} <= {"fsdp", "ddp", "hsdp"}
    assert all(s.memory.capacity / 2**30 == pytest.approx(24.0) and s.memory.fits for s in found)


def test_traced_memory_runs_on_the_native_stack_and_is_refused_on_nxd(job_for):
    from llm_launch.launcher.problems import Findings
    from llm_launch.launcher.validate import _check_traced_memory

    for instance, refused in (("ml.trn2.48xlarge", False), ("ml.trn1.32xlarge", True)):
        out = Findings()
        _check_traced_memory(job_for(TRN1_8B, f"instance={instance}", "plan.memory=traced"), out)
        assert [p.field for p in out.problems] == (["plan.memory"] if refused else [])
