"""Names and paths of an EKS job: the PyTorchJob name, where pods read job.yaml and write output."""

from __future__ import annotations

import copy

from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.render.names import rfc1035_name

JOB_DIR = "/etc/llm-launch"
"""Where the job.yaml ConfigMap is mounted in EKS pods."""
CONTAINER_JOB_YAML = f"{JOB_DIR}/job.yaml"
NAME_MAX = 50
"""PyTorchJob name length that leaves room for the operator's -worker-NNN pod suffix (Kubernetes object names
are at most 63 characters: https://kubernetes.io/docs/concepts/overview/working-with-objects/names/)."""


def eks_name(job: JobConfig) -> str:
    """The PyTorchJob's RFC 1035 name."""
    return rfc1035_name(job.job_name, NAME_MAX)


def shared_storage(job: JobConfig) -> str | None:
    """The mount path of the shared volume, when the job has one."""
    eks = job.cluster.eks
    return eks.mount_path if eks.pvc_name else None


def container_job(job: JobConfig) -> JobConfig:
    """A copy of the job writing to the shared volume (or the pod's /tmp without one)."""
    job = copy.deepcopy(job)
    root = job.cluster.eks.mount_path.rstrip("/") if job.cluster.eks.pvc_name else "/tmp"
    job.output_dir = f"{root}/llm-launch/{eks_name(job)}"
    ckpt = job.training.checkpoint
    ckpt.dir = ckpt.dir or f"{job.output_dir}/checkpoints"
    return job
