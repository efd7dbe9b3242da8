"""Where a remote job reads its data, tokenizer and model: s3:// URIs or paths on the cluster's shared storage.

A recipe names these locations once; each cluster kind maps them (SageMaker: s3:// folders become input channels,
sagemaker/__init__.py; EKS: the PVC's mount path, or S3 read in the pod for data; Slurm: the shared file
system as written: sbatch runs on the login node, which mounts what the compute nodes mount). What a cluster
cannot read is refused before anything is rendered: a SageMaker channel path (/opt/ml/input/data/<channel>) on
EKS or Slurm, and on EKS a path that exists on this machine but lies outside the shared volume.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from llm_launch.launcher.clusters.sagemaker.paths import DATA_ROOT
from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.data_prep import input_paths
from llm_launch.launcher.problems import Findings

DATA_KEYS = ("training.data.train_path", "training.data.valid_path")
"""Keys whose s3:// URIs the job reads directly (train/data/store.py); tokenizer and model are folders."""


def is_channel_path(path: str) -> bool:
    """Whether a path points into SageMaker's input channels."""
    return path == DATA_ROOT or path.startswith(f"{DATA_ROOT}/")


def is_under(path: str, root: str) -> bool:
    return PurePosixPath(path).is_relative_to(PurePosixPath(root))


def _where(key: str, shared: str | None, kind: str) -> str:
    """The fix: where this key may point on this cluster."""
    s3 = f" or {key}=s3://<bucket>/<prefix>" if key in DATA_KEYS or key.startswith("data_prep.sources") else ""
    if shared:
        return f"copy it to the shared file system and set {key}={shared.rstrip('/')}/<path>{s3}"
    return f"set cluster.{kind}.pvc_name=<claim> and put it under cluster.{kind}.mount_path{s3}"


def check_locations(job: JobConfig, out: Findings, kind: str, shared: str | None, *, this_machine_only: bool) -> None:
    """Refuse channel paths, and (this_machine_only) paths that exist only where llm-launch runs.

    `shared` is the cluster's shared file system as the job sees it (None: the cluster has none)."""
    for key, path in input_paths(job):
        if not path or path.startswith("s3://"):
            continue
        if is_channel_path(path):
            out.error(key, f"{path} is a SageMaker input-channel path, which cluster={kind} does not mount; "
                      f"{_where(key, shared, kind)}")
        elif this_machine_only and not (shared and is_under(path, shared)):
            if Path(path).exists():
                out.error(key, f"{path} is on this machine, not on the cluster's shared storage; "
                          f"{_where(key, shared, kind)}")
            else:
                out.warn(key, f"{path} is outside the shared volume; the image must hold it")
