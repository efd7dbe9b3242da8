"""Where a SageMaker training container finds job.yaml, its data channels, and writes its output.

Paths follow the training-container contract:
https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-training-algo-running-container.html
"""

from __future__ import annotations

import copy

from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.data_prep import input_paths

CODE_CHANNEL = "code"
"""Input channel that carries job.yaml into a SageMaker container."""
DATA_ROOT = "/opt/ml/input/data"
"""Each input channel is mounted at <DATA_ROOT>/<channel name>."""
MODEL_DIR = "/opt/ml/model"
"""Uploaded to OutputDataConfig.S3OutputPath when the job ends."""
CHECKPOINT_DIR = "/opt/ml/checkpoints"
"""CheckpointConfig.LocalPath: synced with s3_checkpoint_uri during the job."""
PACK_DIR = "/opt/ml/input/packed"
"""Node-local scratch for packing a raw corpus at start: on the instance's own ML storage volume
(VolumeSizeInGB), outside MODEL_DIR, so it is never uploaded with the model
(https://docs.aws.amazon.com/sagemaker/latest/dg/model-train-storage.html)."""
CONTAINER_JOB_YAML = f"{DATA_ROOT}/{CODE_CHANNEL}/job.yaml"


def container_job(job: JobConfig) -> JobConfig:
    """A copy of the job writing its output and checkpoints where SageMaker uploads and syncs them.

    An s3:// training.checkpoint.dir is the user's choice and is kept: the job writes there directly."""
    job = copy.deepcopy(job)
    job.output_dir = MODEL_DIR
    if not (job.training.checkpoint.dir or "").startswith("s3://"):
        job.training.checkpoint.dir = CHECKPOINT_DIR
    job.training.data.pack_dir = job.training.data.pack_dir or PACK_DIR
    return job


def data_channel_of(path: str | None) -> str | None:
    """The channel a container path points into (/opt/ml/input/data/<channel>/...), if any."""
    prefix = f"{DATA_ROOT}/"
    if not path or not path.startswith(prefix):
        return None
    return path[len(prefix):].split("/", 1)[0] or None


def used_channels(job: JobConfig) -> list[str]:
    """Data channels the job's paths read, sorted."""
    paths = [path for _, path in input_paths(job)]
    return sorted({c for c in (data_channel_of(p) for p in paths) if c and c != CODE_CHANNEL})
