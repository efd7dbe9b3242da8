"""The environment a job's processes need on its backend, composed in one place for every renderer.

GPU nodes get the NCCL/EFA set, Trainium nodes the Neuron set of their stack and EFA; neither
gets the other's variables (CUDA/NCCL settings leak into Trainium jobs in several peers). The NxD (XLA)
stack gets the runtime/compiler/XLA precision set; the native stack (TorchNeuron) gets LNC, its NEFF cache
on persistent storage and its compile-failure policy, and none of the XLA variables. Values are
strings, ordered by name, so rendered files are deterministic. Sources:
https://awsdocs-neuron.readthedocs-hosted.com/en/latest/torch/reference/env-vars.html (TorchNeuron)
https://awsdocs-neuron.readthedocs-hosted.com/en/latest/neuron-runtime/nrt-configurable-parameters.html
https://awsdocs-neuron.readthedocs-hosted.com/en/latest/compiler/neuronx-cc/api-reference-guide/neuron-compiler-cli-reference-guide.html
https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/efa-start-nccl.html
"""

from __future__ import annotations

from llm_launch.launcher.config.instance import LNC_ACCELERATORS
from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.devices import is_trainium, native_neuron
from llm_launch.launcher.elastic import is_elastic
from llm_launch.launcher.topology import logical_core_config

NEURON_LOCAL_CACHE = "/var/tmp/neuron-compile-cache"
"""The Neuron compiler's own default cache folder (node-local)."""
NEURON_CACHE_SUBDIR = "neuron_cache"
"""Folder of the shared compile cache on a cluster's shared storage."""
NEURON_BASE_CC_FLAGS = ("--model-type=transformer", "--distribution-strategy=llm-training")
"""neuronx-cc flags every LLM training job gets (NxDT, awsome and metaflow use these)."""
NEURON_PRECISION_CC_FLAGS = {
    "bf16": ("--enable-mixed-precision-accumulation",),
    "fp32": ("--auto-cast=none",),
}
"""Precision-dependent compiler flags, as NxDT's orchestrator appends them."""


__all__ = ["backend_environment", "compile_cache_url", "is_trainium", "native_neuron_environment",
           "neuron_environment"]


def compile_cache_url(job: JobConfig, shared_storage: str | None) -> str:
    """NEURON_COMPILE_CACHE_URL (NxD) or TORCH_NEURONX_NEFF_CACHE_DIR (native): the job's setting, else the
    cluster's persistent storage (a shared file system,
    or SageMaker's output prefix in S3, which the Neuron cache reads and writes directly:
    https://awsdocs-neuron.readthedocs-hosted.com/en/latest/general/arch/neuron-features/neuron-caching.html),
    else the node-local default, which every job starts empty.

    Always rendered (some peers write a null value into the environment instead).
    Jobs only ever add to this cache; nothing rendered by llm-launch deletes it.
    """
    if job.neuron.compile_cache_url:
        return job.neuron.compile_cache_url
    if shared_storage:
        return f"{shared_storage.rstrip('/')}/{NEURON_CACHE_SUBDIR}"
    return NEURON_LOCAL_CACHE


def neuron_cc_flags(job: JobConfig) -> str:
    """NEURON_CC_FLAGS composed once: base flags, LNC on trn2, precision flags, then the user's cc_flags."""
    flags = list(NEURON_BASE_CC_FLAGS)
    if job.instance.accelerator in LNC_ACCELERATORS:
        flags.append(f"--logical-nc-config={logical_core_config(job.instance)}")
    flags.extend(NEURON_PRECISION_CC_FLAGS.get(job.training.precision, ()))
    flags.extend(job.neuron.cc_flags)
    return " ".join(flags)


def efa_environment(job: JobConfig) -> dict[str, str]:
    """libfabric settings for EFA instance types (none on types without EFA)."""
    inst = job.instance
    if inst.efa_interfaces == 0:
        return {}
    env = {"FI_PROVIDER": "efa"}
    if inst.efa_device_rdma:
        env.update(FI_EFA_USE_DEVICE_RDMA="1", FI_EFA_FORK_SAFE="1", RDMAV_FORK_SAFE="1")
    return env


def neuron_environment(job: JobConfig, shared_storage: str | None) -> dict[str, str]:
    """Neuron runtime and compiler settings (Trainium only)."""
    env = {
        "NEURON_CC_FLAGS": neuron_cc_flags(job),
        "NEURON_COMPILE_CACHE_URL": compile_cache_url(job, shared_storage),
        "NEURON_FUSE_SOFTMAX": "1",
        "NEURON_RT_ASYNC_EXEC_MAX_INFLIGHT_REQUESTS": "3",
        "NEURON_RT_STOCHASTIC_ROUNDING_EN": "1" if job.training.precision == "bf16" and job.neuron.stochastic_rounding
        else "0",
        "MALLOC_ARENA_MAX": "64",
    }
    if job.instance.accelerator in LNC_ACCELERATORS:
        env["NEURON_LOGICAL_NC_CONFIG"] = str(logical_core_config(job.instance))
    return env


def native_neuron_environment(job: JobConfig, shared_storage: str | None) -> dict[str, str]:
    """TorchNeuron settings (Trainium native): the logical-core setting the ranks were counted with, the NEFF cache
    on persistent storage (a file-system path: an s3:// shared storage falls back to the node-local default), and
    compile failures raised rather than run eagerly (the documented default, written out so a job never silently
    trains slower). No XLA, NEURON_CC_FLAGS or NCCL variables: the native stack reads none of them.
    https://awsdocs-neuron.readthedocs-hosted.com/en/latest/torch/reference/env-vars.html"""
    storage = shared_storage if shared_storage and "://" not in shared_storage else None
    return {
        "NEURON_LOGICAL_NC_CONFIG": str(logical_core_config(job.instance)),
        "TORCH_NEURONX_NEFF_CACHE_DIR": compile_cache_url(job, storage),
        "TORCH_NEURONX_DISABLE_FALLBACK_EXECUTION": "1",
        "MALLOC_ARENA_MAX": "64",
    }


def gpu_environment(job: JobConfig) -> dict[str, str]:
    """NCCL settings (NVIDIA only)."""
    return {"NCCL_DEBUG": "WARN", "TORCH_NCCL_ASYNC_ERROR_HANDLING": "1", "MALLOC_ARENA_MAX": "64"}


SAFE_PATH_ENVIRONMENT = {"PYTHONSAFEPATH": "1"}
"""Python (3.11+) never puts the working directory first on sys.path, so a user's own train.py, train/ or
llm_launch/ folder beside the job cannot shadow the entrypoints (docs/imports.md)."""


ELASTIC_ENVIRONMENT = {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}
"""An elastic job's workers meet in a store of their own each round. By default torchrun's c10d rendezvous lends the
workers its own store, which outlives the rounds, and nothing separates one round's keys from the next's, so
workers restarted after a lost node can read the previous round's addresses ("Connection refused" in init_process_group):
https://github.com/pytorch/pytorch/issues/135712; the switch is read in
torch/distributed/elastic/rendezvous/dynamic_rendezvous.py."""


def backend_environment(job: JobConfig, shared_storage: str | None) -> dict[str, str]:
    """Every variable the job's processes get, sorted by name; shared_storage is the cluster's shared file system."""
    env: dict[str, str] = {"PYTHONUNBUFFERED": "1", **SAFE_PATH_ENVIRONMENT}
    if native_neuron(job):
        env.update(native_neuron_environment(job, shared_storage))
        env.update(efa_environment(job))
    elif is_trainium(job):
        env.update(neuron_environment(job, shared_storage))
        env.update(efa_environment(job))
    elif job.instance.accelerator == "nvidia":
        env.update(gpu_environment(job))
        env.update(efa_environment(job))
    if is_elastic(job):
        env.update(ELASTIC_ENVIRONMENT)
    return dict(sorted(env.items()))
