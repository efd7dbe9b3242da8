"""Trainium 2 on the native stack (TorchNeuron) renders for every cluster kind: the torch engine's command, 64 ranks per
node, the Neuron device plugin and EFA resources on EKS, and the TorchNeuron environment without XLA, neuronx-cc flag or
NCCL variables; neuron_parallel_compile (an XLA tool) never runs there."""

from __future__ import annotations

import json

import pytest
import yaml
from cluster_locations import cluster_inputs
from llm_launch.launcher.clusters.eks.pods import EFA_RESOURCE
from llm_launch.launcher.config import store
from llm_launch.launcher.jobfile import read_job
from llm_launch.launcher.tasks import TASKS
from llm_launch.launcher.validate import validate
from omegaconf import OmegaConf

TRN2 = "instance=ml.trn2.48xlarge"
NOT_NATIVE = ("XLA_", "NEURON_CC_FLAGS", "NEURON_COMPILE_CACHE_URL", "NCCL_", "TORCH_NCCL_", "CUDA_")
TRAINING_RECIPES = sorted(p.stem for p in store.RECIPES_DIR.glob("*.yaml")
                          if TASKS[OmegaConf.load(p).get("task", "cpt")].trains_model)
# This machine's recipes are sized for 2 CPU ranks; trn2.48xlarge has 64, so they also scale the global batch.
LOCAL_BATCH = {"tiny_llama_cpt": 256, "tiny_llama_sft": 128, "tiny_llama_dpo": 256}


def native_env_ok(env: dict[str, str], *, cache: str) -> None:
    assert env["NEURON_LOGICAL_NC_CONFIG"] == "2" and env["TORCH_NEURONX_NEFF_CACHE_DIR"] == cache
    assert env["TORCH_NEURONX_DISABLE_FALLBACK_EXECUTION"] == "1" and env["FI_PROVIDER"] == "efa"
    assert not [k for k in env if k.startswith(NOT_NATIVE)], env


@pytest.mark.parametrize("recipe", TRAINING_RECIPES)
def test_every_training_recipe_renders_for_trn2_native_on_its_cluster(recipe, job_for, render_job, tmp_path):
    extra = [f"training.global_batch_size={LOCAL_BATCH[recipe]}"] if recipe in LOCAL_BATCH else []
    job, files = render_job(job_for(f"recipe={recipe}", TRN2, "action=render", *extra), tmp_path)
    written = read_job(files[0])
    assert written.neuron.stack == "native" and "stack: native" in files[0].read_text()
    text = "\n".join(f.read_text() for f in files[1:] if f.suffix in (".json", ".yaml", ".sh", ""))
    assert "neuron_parallel_compile" not in text
    if job.cluster.kind == "sagemaker":
        request = json.loads(files[-1].read_text())
        assert request["ResourceConfig"]["InstanceType"] == "ml.trn2.48xlarge"
        assert request["HyperParameters"]["nproc_per_node"] == "64"
        native_env_ok(request["Environment"], cache="/opt/ml/checkpoints/neuron_cache")  # synced with S3


def test_eks_requests_the_neuron_device_plugin_and_efa(job_for, render_job, tmp_path):
    job = job_for("recipe=llama3_8b_dpo_p5_lora", TRN2, "cluster=eks", *cluster_inputs("eks", "dpo"), "trainer.num_nodes=2",
                  "training.global_batch_size=128", "action=render")
    _, files = render_job(job, tmp_path)
    (ptj,) = [d for d in yaml.safe_load_all(files[-1].read_text()) if d["kind"] == "PyTorchJob"]
    for spec in ptj["spec"]["pytorchReplicaSpecs"].values():
        (container,) = spec["template"]["spec"]["containers"]
        assert container["resources"]["limits"] == {"aws.amazon.com/neuron": 16, EFA_RESOURCE: 16}
        native_env_ok({e["name"]: e["value"] for e in container["env"] if "value" in e}, cache="/fsx/neuron_cache")
        command = container["command"][-1]
        assert "--nproc_per_node=64" in command and "llm_launch.train.dpo" in command
        assert "neuron_parallel_compile" not in command and "ulimit -n 65535" in command


def test_slurm_exports_the_native_environment_and_never_precompiles(job_for, render_job, tmp_path):
    job = job_for("recipe=llama3_8b_cpt_trn1", TRN2, "cluster=slurm", *cluster_inputs("slurm", "cpt"),
                  "cluster.slurm.shared_dir=/fsx",
                  "neuron.precompile=true", "action=render")
    assert any(str(w).startswith("neuron.precompile:") for w in validate(job)[0].warnings)
    _, files = render_job(job, tmp_path)
    script = files[-1].read_text()
    assert "export NEURON_LOGICAL_NC_CONFIG=2" in script
    assert "export TORCH_NEURONX_NEFF_CACHE_DIR=/fsx/neuron_cache" in script
    assert "--nproc_per_node=64" in script and "neuron_parallel_compile" not in script
    assert not [line for line in script.splitlines() if line.startswith("export") and any(
        line.startswith(f"export {prefix}") for prefix in NOT_NATIVE)]


def test_trn1_keeps_nxd_and_its_precompile(job_for, render_job, tmp_path):
    job = job_for("recipe=llama3_8b_cpt_trn1", "cluster=slurm", *cluster_inputs("slurm", "cpt"), "cluster.slurm.shared_dir=/fsx",
                  "neuron.precompile=true", "action=render")
    _, files = render_job(job, tmp_path)
    assert read_job(files[0]).neuron.stack == "nxd"
    script = files[-1].read_text()
    assert "neuron_parallel_compile" in script and "export NEURON_CC_FLAGS=" in script
    assert "TORCH_NEURONX_NEFF_CACHE_DIR" not in script

