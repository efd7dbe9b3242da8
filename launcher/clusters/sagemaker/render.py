"""SageMaker: the CreateTrainingJob request, rendered as JSON next to job.yaml.

The request is built without any AWS call, so it renders with no account. Submission
(llm_launch.launcher.clusters.sagemaker.runner) gives the name a UTC-time suffix (job names are unique per account
and region), uploads job.yaml to the 'code' channel prefix, checks the request against botocore's
service model and sends it. In the container, llm_launch.launcher.container.sagemaker_entry reads the hosts,
derives node rank and master, and starts torchrun. API reference:
https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateTrainingJob.html
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llm_launch.launcher.clusters.sagemaker.paths import CHECKPOINT_DIR, CODE_CHANNEL, used_channels
from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.devices import native_neuron
from llm_launch.launcher.environment import backend_environment
from llm_launch.launcher.jobfile import write_text_atomic
from llm_launch.launcher.plan import Plan
from llm_launch.launcher.render.names import sagemaker_job_name
from llm_launch.launcher.topology import topology_of

REQUEST_FILE = "sagemaker_request.json"
NAME_SUFFIX_FORMAT = "%Y%m%d%H%M%S"
"""UTC time appended at submission, as the SageMaker SDK does: -YYYYmmddHHMMSS."""
NAME_MAX = 63
BASE_NAME_MAX = NAME_MAX - 1 - len("YYYYmmddHHMMSS")
ENTRY_MODULE = "llm_launch.launcher.container.sagemaker_entry"
JOB_TAG = "llm-launch:job"
METRIC_DEFINITIONS = [
    {"Name": "train:loss", "Regex": r"(?:^| )loss=([0-9.eE+-]+)"},
    {"Name": "train:tokens_per_s", "Regex": r"(?:^| )tokens_per_s=([0-9.eE+-]+)"},
    {"Name": "validation:loss", "Regex": r"(?:^| )val_loss=([0-9.eE+-]+)"},
]
"""CloudWatch metrics scraped from the log lines llm_launch.train.metrics prints (key=value pairs)."""


def base_job_name(job: JobConfig) -> str:
    """The valid, deterministic TrainingJobName stem (the submission adds the time suffix)."""
    return sagemaker_job_name(job.job_name, BASE_NAME_MAX)


def code_prefix(job: JobConfig, training_job_name: str) -> str:
    """s3:// prefix job.yaml is uploaded to for one training job."""
    return f"{(job.cluster.sagemaker.s3_code_uri or '').rstrip('/')}/{training_job_name}/"


def _s3_channel(name: str, uri: str, mode: str) -> dict[str, Any]:
    return {"ChannelName": name, "InputMode": mode,
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri,
                                            "S3DataDistributionType": "FullyReplicated"}}}


def input_channels(job: JobConfig, training_job_name: str) -> list[dict[str, Any]]:
    """The code channel (job.yaml) and every data channel a job path points into."""
    sm = job.cluster.sagemaker
    channels = [_s3_channel(CODE_CHANNEL, code_prefix(job, training_job_name), sm.code_channel_mode)]
    channels += [_s3_channel(name, sm.channels[name], sm.input_mode) for name in used_channels(job)
                 if name in sm.channels]
    return channels


def hyperparameters(job: JobConfig, container_job_yaml: str) -> dict[str, str]:
    """Shown in the console for the reader; the entry script reads job.yaml only. Values are strings."""
    topo = topology_of(job)
    return {"job_yaml": container_job_yaml, "task": job.task, "model": job.model.name,
            "num_nodes": str(topo.num_nodes), "nproc_per_node": str(topo.ranks_per_node)}


def compile_cache_storage(job: JobConfig) -> str | None:
    """Where the Neuron compile cache persists: S3's output prefix for NxD (its cache reads and writes s3:// itself);
    for the native stack, whose NEFF cache is a file-system path, the checkpoint folder that SageMaker syncs with
    cluster.sagemaker.s3_checkpoint_uri (https://docs.aws.amazon.com/sagemaker/latest/dg/model-checkpoints.html), or
    none (node-local) without one."""
    sm = job.cluster.sagemaker
    if native_neuron(job):
        return CHECKPOINT_DIR if sm.s3_checkpoint_uri else None
    return sm.s3_output_uri


def build_request(job: JobConfig, container_job_yaml: str) -> dict[str, Any]:
    """The CreateTrainingJob request for the job (its name without the submission suffix)."""
    sm, inst = job.cluster.sagemaker, job.instance
    name = base_job_name(job)
    resources: dict[str, Any] = {"InstanceType": inst.sagemaker_type, "InstanceCount": job.trainer.num_nodes,
                                 "VolumeSizeInGB": sm.volume_size_gb}
    if sm.keep_alive_seconds:
        resources["KeepAlivePeriodInSeconds"] = sm.keep_alive_seconds
    stopping: dict[str, Any] = {"MaxRuntimeInSeconds": int(round(sm.max_runtime_hours * 3600))}
    request: dict[str, Any] = {
        "TrainingJobName": name,
        "RoleArn": sm.role_arn,
        "AlgorithmSpecification": {
            "TrainingImage": job.cluster.image,
            "TrainingInputMode": sm.input_mode,
            "ContainerEntrypoint": ["python", "-m", ENTRY_MODULE],
            "ContainerArguments": ["--job", container_job_yaml],
            "MetricDefinitions": METRIC_DEFINITIONS,
        },
        "ResourceConfig": resources,
        "InputDataConfig": input_channels(job, name),
        "OutputDataConfig": {"S3OutputPath": sm.s3_output_uri, "CompressionType": "NONE"},
        "StoppingCondition": stopping,
        "Environment": backend_environment(job, compile_cache_storage(job)),
        "HyperParameters": hyperparameters(job, container_job_yaml),
        "Tags": [{"Key": k, "Value": v} for k, v in sorted({**sm.tags, JOB_TAG: job.job_name}.items())],
    }
    if sm.s3_checkpoint_uri:
        request["CheckpointConfig"] = {"S3Uri": sm.s3_checkpoint_uri, "LocalPath": CHECKPOINT_DIR}
    if sm.use_spot:
        request["EnableManagedSpotTraining"] = True
        stopping["MaxWaitTimeInSeconds"] = int(round((sm.max_wait_hours or sm.max_runtime_hours) * 3600))
    if sm.max_retry_attempts:
        request["RetryStrategy"] = {"MaximumRetryAttempts": sm.max_retry_attempts}
    if sm.subnets:
        request["VpcConfig"] = {"Subnets": list(sm.subnets), "SecurityGroupIds": list(sm.security_group_ids)}
    return request


def named_for_submission(job: JobConfig, request: dict[str, Any], suffix: str) -> dict[str, Any]:
    """The request under its unique submission name, its code channel following the name."""
    name = f"{request['TrainingJobName']}-{suffix}"
    channels = [dict(c) for c in request["InputDataConfig"]]
    for channel in channels:
        if channel["ChannelName"] == CODE_CHANNEL:
            source = {**channel["DataSource"]["S3DataSource"], "S3Uri": code_prefix(job, name)}
            channel["DataSource"] = {"S3DataSource": source}
    return {**request, "TrainingJobName": name, "InputDataConfig": channels}


def render_sagemaker(job: JobConfig, plan: Plan, out_dir: Path, container_job_yaml: str) -> list[Path]:
    """Write sagemaker_request.json."""
    path = out_dir / REQUEST_FILE
    write_text_atomic(path, json.dumps(build_request(job, container_job_yaml), indent=2, sort_keys=True) + "\n")
    return [path]
