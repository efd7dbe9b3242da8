"""The backend environment per catalog instance type: GPU and Trainium sets never mix."""

from __future__ import annotations

from pathlib import Path

import pytest
from llm_launch.launcher import PROJECT_ROOT
from llm_launch.launcher.clusters import cluster_of
from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.environment import NEURON_LOCAL_CACHE, backend_environment

INSTANCES = sorted(p.stem for p in (PROJECT_ROOT / "conf" / "instance").glob("ml.*.yaml"))
GPU_ONLY = ("NCCL_", "TORCH_NCCL_", "CUDA_", "PYTORCH_CUDA_")
XLA_ONLY = ("XLA_", "NEURON_CC_FLAGS", "NEURON_COMPILE_CACHE_URL", "NEURON_RT_STOCHASTIC_ROUNDING_EN",
            "NEURON_FUSE_SOFTMAX")
RDMA = {"ml.p4d.24xlarge", "ml.p4de.24xlarge", "ml.p5.48xlarge", "ml.p5e.48xlarge", "ml.p5en.48xlarge",
        "ml.trn1.32xlarge", "ml.trn1n.32xlarge", "ml.trn2.48xlarge"}


def environment_of(job: JobConfig) -> dict[str, str]:
    """The environment the job's cluster renders (its shared storage holds the compile cache)."""
    return backend_environment(job, cluster_of(job).shared_storage(job))


@pytest.mark.parametrize("instance", INSTANCES)
def test_environment_per_instance_type(job_for, instance):
    job = job_for("recipe=smoke_allreduce", "cluster=sagemaker", f"instance={instance}", "training.precision=bf16")
    env = environment_of(job)
    assert list(env) == sorted(env) and all(isinstance(v, str) for v in env.values())
    if job.instance.efa_interfaces:
        assert env["FI_PROVIDER"] == "efa"
    else:  # ml.trn1.2xlarge: no EFA, so no libfabric settings
        assert not [k for k in env if k.startswith("FI_")]
    assert ("FI_EFA_USE_DEVICE_RDMA" in env) == (instance in RDMA)
    if "trn2" in instance:  # native (TorchNeuron): LNC, its NEFF cache, no XLA or neuronx-cc flag variables
        assert not [k for k in env if k.startswith(GPU_ONLY + XLA_ONLY)]
        assert env["NEURON_LOGICAL_NC_CONFIG"] == "2" and env["TORCH_NEURONX_DISABLE_FALLBACK_EXECUTION"] == "1"
        assert env["TORCH_NEURONX_NEFF_CACHE_DIR"] == NEURON_LOCAL_CACHE  # no s3_checkpoint_uri: node-local
    elif "trn" in instance:
        assert not [k for k in env if k.startswith(GPU_ONLY)]
        assert env["NEURON_RT_STOCHASTIC_ROUNDING_EN"] == "1"
        assert env["NEURON_COMPILE_CACHE_URL"] == "s3://example-bucket-111122223333/llm-launch/output/neuron_cache"
        assert "--model-type=transformer" in env["NEURON_CC_FLAGS"]
        assert ("NEURON_LOGICAL_NC_CONFIG" in env) == ("trn2" in instance)
    else:
        assert not [k for k in env if k.startswith("NEURON_")]
        assert env["NCCL_DEBUG"] == "WARN"


def test_trn2_logical_cores_match_between_runtime_and_compiler(job_for):
    for lnc in (1, 2):
        env = environment_of(job_for("recipe=smoke_allreduce", "cluster=eks", "instance=ml.trn2.48xlarge",
                                     "neuron.stack=nxd", f"instance.logical_core_config={lnc}"))
        assert env["NEURON_LOGICAL_NC_CONFIG"] == str(lnc)
        assert f"--logical-nc-config={lnc}" in env["NEURON_CC_FLAGS"].split()
        native = environment_of(job_for("recipe=smoke_allreduce", "cluster=eks", "instance=ml.trn2.48xlarge",
                                        f"instance.logical_core_config={lnc}"))
        assert native["NEURON_LOGICAL_NC_CONFIG"] == str(lnc) and "NEURON_CC_FLAGS" not in native


def test_cc_flags_precision_and_rounding(job_for):
    base = ("recipe=llama3_8b_cpt_trn1",)
    env = environment_of(job_for(*base, "neuron.cc_flags=[-O1,'--verbose=info']"))
    assert env["NEURON_CC_FLAGS"].endswith("--enable-mixed-precision-accumulation -O1 --verbose=info")
    assert environment_of(job_for(*base, "neuron.stochastic_rounding=false"))[
        "NEURON_RT_STOCHASTIC_ROUNDING_EN"] == "0"
    fp32 = environment_of(job_for(*base, "training.precision=fp32"))
    assert fp32["NEURON_RT_STOCHASTIC_ROUNDING_EN"] == "0" and "--auto-cast=none" in fp32["NEURON_CC_FLAGS"]


@pytest.mark.parametrize("overrides, expected", [
    (("cluster=eks",), "/fsx/neuron_cache"),
    (("cluster=eks", "cluster.eks.mount_path=/shared"), "/shared/neuron_cache"),
    (("cluster=eks", "cluster.eks.pvc_name=null"), NEURON_LOCAL_CACHE),
    (("cluster=slurm", "cluster.slurm.shared_dir=/lustre"), "/lustre/neuron_cache"),
    (("cluster=sagemaker", "neuron.compile_cache_url=s3://my-bucket/neuron-cache"), "s3://my-bucket/neuron-cache"),
    (("cluster=sagemaker", "cluster.sagemaker.s3_output_uri=s3://my-bucket/out/"), "s3://my-bucket/out/neuron_cache"),
    (("cluster=slurm", "neuron.compile_cache_url=/fsx/cache-2.30"), "/fsx/cache-2.30"),
])
def test_compile_cache_location(job_for, overrides, expected):
    env = environment_of(job_for("recipe=llama3_8b_cpt_trn1", *overrides))
    assert env["NEURON_COMPILE_CACHE_URL"] == expected


@pytest.mark.parametrize("overrides, expected", [
    (("cluster=eks",), "/fsx/neuron_cache"),
    (("cluster=eks", "cluster.eks.pvc_name=null"), NEURON_LOCAL_CACHE),
    (("cluster=slurm", "cluster.slurm.shared_dir=/lustre"), "/lustre/neuron_cache"),
    (("cluster=slurm", "neuron.compile_cache_url=/fsx/neff-2.34"), "/fsx/neff-2.34"),
    # SageMaker: the checkpoint folder it syncs with S3 (the NEFF cache takes no s3:// URL), else node-local
    (("cluster=sagemaker", "cluster.sagemaker.s3_checkpoint_uri=s3://my-bucket/ckpt"), "/opt/ml/checkpoints/neuron_cache"),
    (("cluster=sagemaker", "cluster.sagemaker.s3_checkpoint_uri=null"), NEURON_LOCAL_CACHE),
])
def test_native_neff_cache_on_persistent_storage(job_for, overrides, expected):
    job = job_for("recipe=llama3_8b_cpt_trn1", "instance=ml.trn2.48xlarge", *overrides)
    if job.cluster.kind == "sagemaker":
        from llm_launch.launcher.clusters.sagemaker.render import build_request

        env = build_request(job, "/opt/ml/input/data/code/job.yaml")["Environment"]
    else:
        env = environment_of(job)
    assert env["TORCH_NEURONX_NEFF_CACHE_DIR"] == expected


def test_cpu_gets_no_accelerator_variables(job_for):
    assert environment_of(job_for()) == {"PYTHONSAFEPATH": "1", "PYTHONUNBUFFERED": "1"}
    assert Path(PROJECT_ROOT / "conf" / "instance" / "local_cpu.yaml").is_file()
