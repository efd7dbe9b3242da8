"""Checks of the SageMaker settings a render or submission relies on, reported with every other problem.

Limits are those of the CreateTrainingJob API:
https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateTrainingJob.html
"""

from __future__ import annotations

import re

from launcher.clusters.sagemaker.paths import data_channel_of
from launcher.config.schema import JobConfig
from launcher.data_prep import input_paths
from launcher.problems import Findings

MAX_RUNTIME_HOURS = 28 * 24
MAX_KEEP_ALIVE_S = 21600
MAX_RETRIES = 30
MAX_USER_TAGS = 49
S3_URI = re.compile(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?")
CHANNEL_NAME = re.compile(r"[A-Za-z0-9.\-_]{1,64}")


def check_required(job: JobConfig, out: Findings) -> None:
    """The instance type, role, output location and spot settings a training job cannot do without."""
    sm, inst = job.cluster.sagemaker, job.instance
    if inst.accelerator != "cpu" and not inst.sagemaker_type:
        out.error("instance", f"{inst.name} has no SageMaker instance type; pick an ml.* instance")
    if not sm.role_arn:
        out.error("cluster.sagemaker.role_arn", "SageMaker needs an execution role; set "
                  "cluster.sagemaker.role_arn=arn:aws:iam::<account>:role/<name>")
    if not sm.s3_output_uri:
        out.error("cluster.sagemaker.s3_output_uri", "SageMaker needs an output location; set "
                  "cluster.sagemaker.s3_output_uri=s3://<bucket>/<prefix>")
    if sm.use_spot and not sm.s3_checkpoint_uri:
        out.error("cluster.sagemaker.s3_checkpoint_uri", "spot training needs checkpoints synced to S3; set "
                  "cluster.sagemaker.s3_checkpoint_uri=s3://<bucket>/<prefix>")
    if sm.use_spot and (sm.max_wait_hours or 0) < sm.max_runtime_hours:
        out.error("cluster.sagemaker.max_wait_hours", f"with spot it must be set and at least max_runtime_hours "
                  f"({sm.max_runtime_hours})")
    if not 0 < sm.max_runtime_hours <= MAX_RUNTIME_HOURS:
        out.error("cluster.sagemaker.max_runtime_hours", f"must be in (0, {MAX_RUNTIME_HOURS}] "
                  f"(28 days), got {sm.max_runtime_hours}")
    if not 0 <= sm.keep_alive_seconds <= MAX_KEEP_ALIVE_S:
        out.error("cluster.sagemaker.keep_alive_seconds", f"must be 0 to {MAX_KEEP_ALIVE_S}, got "
                  f"{sm.keep_alive_seconds}")


def check_locations(job: JobConfig, out: Findings) -> None:
    """S3 URIs, input channels and the paths that read them."""
    sm = job.cluster.sagemaker
    if not sm.s3_code_uri:
        out.error("cluster.sagemaker.s3_code_uri", "job.yaml is uploaded there at submission; set "
                  "cluster.sagemaker.s3_code_uri=s3://<bucket>/<prefix>")
    for key, uri in (("cluster.sagemaker.s3_output_uri", sm.s3_output_uri),
                     ("cluster.sagemaker.s3_checkpoint_uri", sm.s3_checkpoint_uri),
                     ("cluster.sagemaker.s3_code_uri", sm.s3_code_uri),
                     *((f"cluster.sagemaker.channels.{k}", v) for k, v in sorted(sm.channels.items()))):
        if uri and not S3_URI.fullmatch(uri):
            out.error(key, f"'{uri}' is not an s3://<bucket>/<prefix> URI")
    if sm.input_mode == "Pipe":
        out.error("cluster.sagemaker.input_mode", "Pipe streams a FIFO the data loader cannot read; use FastFile "
                  "(large corpora) or File")
    for name in sorted(sm.channels):
        if not CHANNEL_NAME.fullmatch(name) or name == "code":
            out.error(f"cluster.sagemaker.channels.{name}", "channel names are 1-64 of A-Z a-z 0-9 . - _ and "
                      "'code' is reserved for job.yaml")
    for key, path in input_paths(job):
        channel = data_channel_of(path)
        if channel and channel not in sm.channels:
            out.error(key, f"{path} reads input channel '{channel}', which cluster.sagemaker.channels does not "
                      f"define; set cluster.sagemaker.channels.{channel}=s3://<bucket>/<prefix>")
        elif path and not channel:
            out.warn(key, f"{path} is not under /opt/ml/input/data/<channel>; the image must already hold it")


def check_limits(job: JobConfig, out: Findings) -> None:
    """Retries, VPC, tags and volume within what the API accepts."""
    sm = job.cluster.sagemaker
    if not 0 <= sm.max_retry_attempts <= MAX_RETRIES:
        out.error("cluster.sagemaker.max_retry_attempts", f"must be 0 (no retries) to {MAX_RETRIES}, "
                  f"got {sm.max_retry_attempts}")
    if bool(sm.subnets) != bool(sm.security_group_ids):
        out.error("cluster.sagemaker.subnets", "a VPC needs both subnets and security_group_ids; set both or neither")
    if len(sm.tags) > MAX_USER_TAGS:
        out.error("cluster.sagemaker.tags", f"at most {MAX_USER_TAGS} tags (llm-launch adds one)")
    if sm.volume_size_gb < 1:
        out.error("cluster.sagemaker.volume_size_gb", f"must be at least 1, got {sm.volume_size_gb}")
    if sm.s3_checkpoint_uri and job.instance.accelerator.startswith("trainium") and job.trainer.num_nodes > 1:
        # Each instance syncs its own /opt/ml/checkpoints with S3:
        # https://docs.aws.amazon.com/sagemaker/latest/dg/model-checkpoints.html
        out.warn("cluster.sagemaker.s3_checkpoint_uri", "NxD checkpoints assume one folder shared by all nodes; "
                 "/opt/ml/checkpoints is per node: prefer an FSx channel or an s3:// "
                 "training.checkpoint.dir for multi-node Trainium")


def check_sagemaker(job: JobConfig, out: Findings) -> None:
    """Every SageMaker check."""
    check_required(job, out)
    check_locations(job, out)
    check_limits(job, out)
