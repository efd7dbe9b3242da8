"""The job as it runs on a remote cluster: its paths as the containers see them.

The CLI writes this version of job.yaml (the one every rank reads) before rendering, so the
rendered files and job.yaml always agree.
"""

from __future__ import annotations

import copy

from launcher.config.schema import JobConfig
from launcher.render.names import rfc1035_name

SAGEMAKER_CODE_CHANNEL = "code"
"""Input channel that carries job.yaml into a SageMaker container."""
SAGEMAKER_DATA_ROOT = "/opt/ml/input/data"
SAGEMAKER_MODEL_DIR = "/opt/ml/model"
"""Uploaded to OutputDataConfig.S3OutputPath when the job ends."""
SAGEMAKER_CHECKPOINT_DIR = "/opt/ml/checkpoints"
"""CheckpointConfig.LocalPath: synced with s3_checkpoint_uri during the job."""
SAGEMAKER_PACK_DIR = "/opt/ml/input/packed"
"""Node-local scratch for packing a raw corpus at start: on the instance's ML storage volume (VolumeSizeInGB),
outside /opt/ml/model, so it is not uploaded with the model
(https://docs.aws.amazon.com/sagemaker/latest/dg/model-train-storage.html)."""
EKS_JOB_DIR = "/etc/llm-launch"
"""Where the job.yaml ConfigMap is mounted in EKS pods."""
EKS_NAME_MAX = 50
"""PyTorchJob name length that leaves room for the operator's -worker-NNN pod suffix (kubernetes.md section 4)."""


def eks_name(job: JobConfig) -> str:
    """The PyTorchJob's RFC 1035 name."""
    return rfc1035_name(job.job_name, EKS_NAME_MAX)


def container_job_yaml(job: JobConfig, local_job_yaml: str) -> str:
    """Path of job.yaml inside the job's containers."""
    kind = job.cluster.kind
    if kind == "sagemaker":
        return f"{SAGEMAKER_DATA_ROOT}/{SAGEMAKER_CODE_CHANNEL}/job.yaml"
    if kind == "eks":
        return f"{EKS_JOB_DIR}/job.yaml"
    return local_job_yaml  # slurm: the rendered file itself, on the shared file system


def remote_job(job: JobConfig) -> JobConfig:
    """A copy of the job with output and checkpoint folders where the cluster keeps them."""
    job = copy.deepcopy(job)
    ckpt = job.training.checkpoint
    kind = job.cluster.kind
    if kind == "sagemaker":
        job.output_dir = SAGEMAKER_MODEL_DIR
        ckpt.dir = SAGEMAKER_CHECKPOINT_DIR
        job.training.data.pack_dir = job.training.data.pack_dir or SAGEMAKER_PACK_DIR
    elif kind == "eks":
        root = job.cluster.eks.mount_path.rstrip("/") if job.cluster.eks.pvc_name else "/tmp"
        job.output_dir = f"{root}/llm-launch/{eks_name(job)}"
        ckpt.dir = ckpt.dir or f"{job.output_dir}/checkpoints"
    elif kind == "slurm":
        ckpt.dir = ckpt.dir or f"{job.output_dir}/checkpoints"
    return job
