"""Checks of the SageMaker settings a render or submission relies on, reported with every other problem.

Limits are those of the CreateTrainingJob API:
https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateTrainingJob.html
"""

from __future__ import annotations

import re
from pathlib import Path

from llm_launch.launcher.clusters.sagemaker.paths import CONTAINER_JOB_YAML, DATA_ROOT, container_job, data_channel_of
from llm_launch.launcher.clusters.sagemaker.render import JOB_TAG, build_request
from llm_launch.launcher.clusters.sagemaker.request_model import partition_of, request_problems, sagemaker_regions
from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.data_prep import input_paths
from llm_launch.launcher.devices import uses_nxd
from llm_launch.launcher.elastic import is_elastic
from llm_launch.launcher.problems import Findings

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
        elif path and not channel and not path.startswith("s3://"):  # s3:// data is read directly; validate
            # refuses s3:// tokenizer and model folders
            if Path(path).exists():
                out.error(key, f"{path} is on this machine, which the training job cannot read; upload it to S3, set "
                          f"cluster.sagemaker.channels.<name>=s3://<bucket>/<prefix> and {key}={DATA_ROOT}/<name>")
            else:
                out.warn(key, f"{path} is not under {DATA_ROOT}/<channel>; the image must already hold it")


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
    if is_elastic(job):
        # ResourceConfig.InstanceCount is one number; a retry (RetryStrategy) runs the job again on as many instances:
        # https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ResourceConfig.html
        out.error("trainer.min_nodes", f"a SageMaker training job runs a fixed instance count (ResourceConfig."
                  f"InstanceCount={job.trainer.num_nodes}), so it cannot continue on fewer nodes; set "
                  "trainer.min_nodes=null (cluster.sagemaker.max_retry_attempts restarts it on all of them)")
    direct_to_s3 = (job.training.checkpoint.dir or "").startswith("s3://")
    if sm.s3_checkpoint_uri and uses_nxd(job) and job.trainer.num_nodes > 1 \
            and not direct_to_s3:
        # Each instance syncs its own /opt/ml/checkpoints with S3:
        # https://docs.aws.amazon.com/sagemaker/latest/dg/model-checkpoints.html
        out.warn("cluster.sagemaker.s3_checkpoint_uri", "NxD checkpoints assume one folder shared by all nodes; "
                 "/opt/ml/checkpoints is per node: prefer an FSx channel or an s3:// "
                 "training.checkpoint.dir for multi-node Trainium")


REQUEST_KEYS = (  # CreateTrainingJob member path prefix -> the config key that sets it
    ("TrainingJobName", "job_name"), ("RoleArn", "cluster.sagemaker.role_arn"),
    ("AlgorithmSpecification.TrainingImage", "cluster.image"),
    ("AlgorithmSpecification.TrainingInputMode", "cluster.sagemaker.input_mode"),
    ("OutputDataConfig", "cluster.sagemaker.s3_output_uri"),
    ("CheckpointConfig", "cluster.sagemaker.s3_checkpoint_uri"), ("VpcConfig.Subnets", "cluster.sagemaker.subnets"),
    ("VpcConfig.SecurityGroupIds", "cluster.sagemaker.security_group_ids"),
    ("ResourceConfig.VolumeSizeInGB", "cluster.sagemaker.volume_size_gb"),
    ("ResourceConfig.KeepAlivePeriodInSeconds", "cluster.sagemaker.keep_alive_seconds"),
    ("ResourceConfig.InstanceCount", "trainer.num_nodes"), ("ResourceConfig.InstanceType", "instance"),
    ("StoppingCondition.MaxRuntimeInSeconds", "cluster.sagemaker.max_runtime_hours"),
    ("StoppingCondition.MaxWaitTimeInSeconds", "cluster.sagemaker.max_wait_hours"),
    ("RetryStrategy", "cluster.sagemaker.max_retry_attempts"), ("InputDataConfig", "cluster.sagemaker.channels"),
    ("Environment", "neuron"), ("HyperParameters", "job_name"),
)
WARM_POOLS_DOC = "https://docs.aws.amazon.com/sagemaker/latest/dg/train-warm-pools.html#train-warm-pools-considerations"
TAGS_DOC = "https://docs.aws.amazon.com/tag-editor/latest/userguide/best-practices-and-strats.html"


def _config_key(path: str, tag_keys: list[str]) -> str:
    if path.startswith("Tags["):
        index = int(path[5:path.index("]")])
        return f"cluster.sagemaker.tags.{tag_keys[index]}" if index < len(tag_keys) else "cluster.sagemaker.tags"
    for prefix, key in REQUEST_KEYS:
        if path.startswith(prefix):
            return key
    return "cluster.sagemaker"


def check_api_rules(job: JobConfig, out: Findings) -> None:
    """What CreateTrainingJob would refuse, found without an account: botocore's service model (patterns,
    lengths, enums, ranges) on the request this job renders, the regions botocore knows, and AWS's documented
    rules on tags and warm pools. Each problem names the config key that sets the value."""
    sm = job.cluster.sagemaker
    if sm.keep_alive_seconds and sm.use_spot:
        out.error("cluster.sagemaker.keep_alive_seconds", f"warm pools do not work with managed spot training "
                  f"({WARM_POOLS_DOC}); set it to 0 or cluster.sagemaker.use_spot=false")
    for key in sorted(sm.tags):
        if key.lower().startswith("aws:"):
            out.error(f"cluster.sagemaker.tags.{key}", f"the aws: prefix is reserved for AWS ({TAGS_DOC}); "
                      "rename the tag")
    try:
        regions = sagemaker_regions()
        problems = request_problems(build_request(container_job(job), CONTAINER_JOB_YAML))
    except ImportError:
        out.warn("cluster.sagemaker", "botocore is not installed, so the request is not checked against the "
                 "SageMaker API until submission; pip install 'llm-launch[aws]'")
        return
    if job.cluster.region not in regions:
        out.error("cluster.region", f"'{job.cluster.region}' is not a region where botocore knows SageMaker "
                  f"(e.g. us-east-1, us-west-2, eu-west-1); check `cluster.region`")
    partition = partition_of(job.cluster.region)
    role_partition = (sm.role_arn or "").split(":")[1] if (sm.role_arn or "").count(":") >= 2 else None
    if partition and role_partition and role_partition.startswith("aws") and role_partition != partition:
        out.error("cluster.sagemaker.role_arn", f"the role is in partition '{role_partition}' but region "
                  f"{job.cluster.region} is in '{partition}'; use a role of the region's partition "
                  f"(arn:{partition}:iam::<account>:role/<name>)")
    reported = {p.field for p in out.problems}
    tag_keys = sorted({**sm.tags, JOB_TAG: job.job_name})
    by_key: dict[str, list[str]] = {}
    for path, message in problems:
        by_key.setdefault(_config_key(path, tag_keys), []).append(f"{path}: {message}")
    for key, messages in by_key.items():
        if key not in reported:
            out.error(key, f"CreateTrainingJob would refuse it ({'; '.join(messages)}, per botocore's SageMaker "
                      "service model)")


def check_sagemaker(job: JobConfig, out: Findings) -> None:
    """Every SageMaker check."""
    check_required(job, out)
    check_locations(job, out)
    check_limits(job, out)
    check_api_rules(job, out)
