"""Checks of the SageMaker, EKS and Slurm settings a render or submission relies on.

Called from launcher.validate, so they are reported with every other problem before anything is
rendered or sent. The shipped cluster configs use obviously fake example values (account
111122223333, example-bucket, ExampleSageMakerTrainingRole): rendering works with them,
`action=submit` refuses them and names every key to set.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from launcher.config.schema import JobConfig
from launcher.render.sagemaker import data_channel_of, used_channels
from launcher.tasks import TASKS

if TYPE_CHECKING:
    from launcher.validate import Findings

EXAMPLE_MARKERS = ("111122223333", "example-bucket", "ExampleSageMakerTrainingRole")
"""Substrings of the documentation example values shipped in conf/cluster/*.yaml."""
SLURM_NAME = re.compile(r"[A-Za-z0-9_.-]+")
SLURM_TIME = re.compile(r"(\d+-)?\d+(:\d{2}){0,2}|\d+-\d+|UNLIMITED|INFINITE")
K8S_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
K8S_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
K8S_QUANTITY = re.compile(r"\d+(\.\d+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?")
S3_URI = re.compile(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?")
CHANNEL_NAME = re.compile(r"[A-Za-z0-9.\-_]{1,64}")
RESTART_POLICIES = ("Always", "OnFailure", "Never", "ExitCode")
CLEAN_POD_POLICIES = ("All", "Running", "None")
SAGEMAKER_MAX_RETRIES = 30
SAGEMAKER_MAX_USER_TAGS = 49


def submitted_values(job: JobConfig) -> list[tuple[str, str | None]]:
    """(key, value) of every setting that names a real resource a submission would use."""
    cluster, sm = job.cluster, job.cluster.sagemaker
    values: list[tuple[str, str | None]] = [("cluster.image", cluster.image)]
    if cluster.kind == "sagemaker":
        values += [("cluster.sagemaker.role_arn", sm.role_arn), ("cluster.sagemaker.s3_output_uri", sm.s3_output_uri),
                   ("cluster.sagemaker.s3_checkpoint_uri", sm.s3_checkpoint_uri),
                   ("cluster.sagemaker.s3_code_uri", sm.s3_code_uri)]
        values += [(f"cluster.sagemaker.channels.{name}", sm.channels.get(name)) for name in used_channels(job)]
    if cluster.kind == "slurm":
        values.append(("cluster.slurm.container_image", cluster.slurm.container_image))
    values.append(("neuron.compile_cache_url", job.neuron.compile_cache_url))
    return values


def check_example_values(job: JobConfig, out: Findings) -> None:
    """action=submit must not send the shipped documentation examples."""
    for key, value in submitted_values(job):
        if value and any(marker in value for marker in EXAMPLE_MARKERS):
            out.error(key, f"'{value}' is a documentation example, not a real resource; set {key}=<yours> "
                      "before action=submit (action=render works with it)")


def _check_sagemaker(job: JobConfig, out: Findings) -> None:
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
    trains = TASKS[job.task].trains_model
    data = job.training.data
    for key, path in (("training.data.train_path", data.train_path), ("training.data.valid_path", data.valid_path),
                      ("training.data.tokenizer_path", data.tokenizer_path),
                      ("model.pretrained_path", job.model.pretrained_path)):
        channel = data_channel_of(path)
        if channel and channel not in sm.channels:
            out.error(key, f"{path} reads input channel '{channel}', which cluster.sagemaker.channels does not "
                      f"define; set cluster.sagemaker.channels.{channel}=s3://<bucket>/<prefix>")
        elif path and not channel and trains:
            out.warn(key, f"{path} is not under /opt/ml/input/data/<channel>; the image must already hold it")
    if not 0 <= sm.max_retry_attempts <= SAGEMAKER_MAX_RETRIES:
        out.error("cluster.sagemaker.max_retry_attempts", f"must be 0 (no retries) to {SAGEMAKER_MAX_RETRIES}, "
                  f"got {sm.max_retry_attempts}")
    if bool(sm.subnets) != bool(sm.security_group_ids):
        out.error("cluster.sagemaker.subnets", "a VPC needs both subnets and security_group_ids; set both or neither")
    if len(sm.tags) > SAGEMAKER_MAX_USER_TAGS:
        out.error("cluster.sagemaker.tags", f"at most {SAGEMAKER_MAX_USER_TAGS} tags (llm-launch adds one)")
    if sm.volume_size_gb < 1:
        out.error("cluster.sagemaker.volume_size_gb", f"must be at least 1, got {sm.volume_size_gb}")
    if sm.s3_checkpoint_uri and job.instance.accelerator.startswith("trainium") and job.trainer.num_nodes > 1:
        out.warn("cluster.sagemaker.s3_checkpoint_uri", "NxD checkpoints assume one folder shared by all nodes; "
                 "/opt/ml/checkpoints is per node (sagemaker.md section 2): prefer an FSx channel or an s3:// "
                 "training.checkpoint.dir for multi-node Trainium")


def _check_eks(job: JobConfig, out: Findings) -> None:
    eks = job.cluster.eks
    if eks.restart_policy not in RESTART_POLICIES:
        out.error("cluster.eks.restart_policy", f"'{eks.restart_policy}' is not one of {', '.join(RESTART_POLICIES)}")
    if eks.clean_pod_policy not in CLEAN_POD_POLICIES:
        out.error("cluster.eks.clean_pod_policy", f"'{eks.clean_pod_policy}' is not one of "
                  f"{', '.join(CLEAN_POD_POLICIES)}")
    for key, value in (("cluster.eks.backoff_limit", eks.backoff_limit),
                       ("cluster.eks.ttl_seconds_after_finished", eks.ttl_seconds_after_finished)):
        if not 0 <= value < 2**31:
            out.error(key, f"must be 0 to 2147483647, got {value}")
    if not K8S_LABEL.fullmatch(eks.namespace):
        out.error("cluster.eks.namespace", f"'{eks.namespace}' is not a Kubernetes namespace name (RFC 1123 label)")
    for key, name in (("cluster.eks.pvc_name", eks.pvc_name), ("cluster.eks.service_account", eks.service_account),
                      ("cluster.eks.hf_token_secret", eks.hf_token_secret)):
        if name is not None and not K8S_SUBDOMAIN.fullmatch(name):
            out.error(key, f"'{name}' is not a Kubernetes object name (lower-case letters, digits, '-', '.')")
    if not eks.mount_path.startswith("/"):
        out.error("cluster.eks.mount_path", f"'{eks.mount_path}' must be an absolute path")
    if eks.shm_size is not None and not K8S_QUANTITY.fullmatch(eks.shm_size):
        out.error("cluster.eks.shm_size", f"'{eks.shm_size}' is not a Kubernetes quantity such as 64Gi")
    if not eks.pvc_name:
        out.warn("cluster.eks.pvc_name", "no shared volume: outputs and checkpoints stay in the pods and are lost "
                 "when they end; set cluster.eks.pvc_name=<FSx claim>")
    if eks.elastic and job.instance.accelerator.startswith("trainium"):
        out.warn("cluster.eks.elastic", "Neuron graphs are compiled for a fixed world size; the job keeps min = max "
                 "nodes, so elastic only changes how ranks meet")


def _check_slurm(job: JobConfig, out: Findings) -> None:
    slurm = job.cluster.slurm
    for key, value in (("cluster.slurm.partition", slurm.partition), ("cluster.slurm.account", slurm.account)):
        if value is not None and not SLURM_NAME.fullmatch(value):
            out.error(key, f"'{value}' is not a Slurm name (letters, digits, '_', '.', '-')")
    if not SLURM_TIME.fullmatch(slurm.time_limit):
        out.error("cluster.slurm.time_limit", f"'{slurm.time_limit}' is not an sbatch --time such as 5-00:00:00")
    shared = slurm.shared_dir
    if not shared.startswith("/") or any(c in shared for c in ",:\n"):
        out.error("cluster.slurm.shared_dir", f"'{shared}' must be an absolute path without ',' or ':'")
    elif slurm.container_image and any(c in job.output_dir for c in ",:"):
        out.error("output_dir", "pyxis cannot mount a path with ',' or ':'; pick another output_dir")
    elif not job.output_dir.startswith(shared.rstrip("/") + "/"):
        out.warn("output_dir", f"{job.output_dir} is not under {shared}: every node must be able to read job.yaml "
                 "there; set output_dir=<shared_dir>/... unless that folder is shared too")


def check_remote(job: JobConfig, out: Findings) -> None:
    """Cluster-kind checks; the example-value check only for action=submit."""
    kind = job.cluster.kind
    if kind == "local":
        return
    if job.action == "submit":
        check_example_values(job, out)
    if kind == "sagemaker":
        _check_sagemaker(job, out)
    elif kind == "eks":
        _check_eks(job, out)
    elif kind == "slurm":
        _check_slurm(job, out)
