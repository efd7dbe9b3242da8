"""The cluster section: where the job runs, with the settings of each cluster kind."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llm_launch.launcher.config.checks import Checks, Section
from llm_launch.launcher.config.choices import choices

ClusterKind = choices("ClusterKind", "local", "sagemaker", "eks", "slurm")


SageMakerInputMode = choices("SageMakerInputMode", "File", "FastFile", "Pipe")


RdzvBackend = choices("RdzvBackend", "c10d", "etcd")


RestartPolicy = choices("RestartPolicy", "Always", "OnFailure", "Never", "ExitCode")


CleanPodPolicy = choices("CleanPodPolicy", "All", "Running", "None")


EksJobKind = choices("EksJobKind", "pytorchjob", "trainjob", "hyperpod")


@dataclass
class SageMakerClusterConfig(Section):
    """What a SageMaker training job needs beyond the instance type."""

    role_arn: str | None = None
    """IAM role the training job assumes."""
    s3_output_uri: str | None = None
    """s3:// prefix for the job's output (OutputDataConfig.S3OutputPath)."""
    s3_checkpoint_uri: str | None = None
    """s3:// prefix synced with /opt/ml/checkpoints; reusing it resumes the run."""
    s3_code_uri: str | None = None
    """s3:// prefix the project's code is uploaded to before submission."""
    input_mode: SageMakerInputMode = SageMakerInputMode.FastFile
    """Input mode of the data channels: File, FastFile or Pipe."""
    volume_size_gb: int = 512
    """EBS volume per instance in GB (checkpoints, compile cache)."""
    max_runtime_hours: float = 120.0
    """StoppingCondition.MaxRuntimeInSeconds, in hours (at most 28 days)."""
    use_spot: bool = False
    """Managed spot training (needs checkpoints)."""
    max_wait_hours: float | None = None
    """With spot: how long to wait for capacity plus run; at least max_runtime_hours."""
    keep_alive_seconds: int = 0
    """Warm-pool keep-alive after the job, 0 to 21600 seconds."""
    max_retry_attempts: int = 0
    """RetryStrategy.MaximumRetryAttempts (0 = no retry strategy)."""
    subnets: list[str] = field(default_factory=list)
    """VPC subnets, for FSx data or private networking; empty for no VPC."""
    security_group_ids: list[str] = field(default_factory=list)
    """VPC security groups (with subnets)."""
    tags: dict[str, str] = field(default_factory=dict)
    """Tags put on the training job."""
    channels: dict[str, str] = field(default_factory=dict)
    """Input channels: name -> s3:// prefix, mounted at /opt/ml/input/data/<name>. Only channels that a
    training.data path (or model.pretrained_path) points into are sent with the job."""
    code_channel_mode: SageMakerInputMode = SageMakerInputMode.File
    """Input mode of the 'code' channel that carries job.yaml (uploaded to s3_code_uri/<job name>/)."""


@dataclass
class EksClusterConfig(Section):
    """What a Kubeflow PyTorchJob on EKS needs."""

    namespace: str = "default"
    """Kubernetes namespace of the job."""
    pvc_name: str | None = None
    """PersistentVolumeClaim (e.g. FSx for Lustre) for data, checkpoints and the compile cache."""
    mount_path: str = "/fsx"
    """Where the PVC is mounted in the pods."""
    service_account: str | None = None
    """Service account of the pods (IRSA for S3 access)."""
    elastic: bool = False
    """Elastic worker-only job with rendezvous instead of Master and Worker."""
    rdzv_backend: RdzvBackend = RdzvBackend.c10d
    """Elastic rendezvous backend: c10d (on the first Worker) or etcd (a rendered etcd Deployment and Service; the
    image then needs python-etcd, the client torch's etcd rendezvous imports)."""
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    """Pod tolerations, as Kubernetes writes them."""
    hf_token_secret: str | None = None
    """Name of a Secret whose key 'token' holds a Hugging Face token (never the token itself)."""
    restart_policy: RestartPolicy = RestartPolicy.OnFailure
    """Pod restartPolicy of every replica: Always, OnFailure, Never or ExitCode."""
    backoff_limit: int = 3
    """runPolicy.backoffLimit: pod restarts before the whole job is marked failed."""
    ttl_seconds_after_finished: int = 604800
    """runPolicy.ttlSecondsAfterFinished: the finished PyTorchJob is deleted after this (7 days)."""
    clean_pod_policy: CleanPodPolicy = CleanPodPolicy.Running
    """runPolicy.cleanPodPolicy: All, Running (keep finished pods for their logs) or None."""
    etcd_image: str = "quay.io/coreos/etcd:v3.5.19"
    """Image of the etcd rendezvous server (rdzv_backend=etcd; run with --enable-v2)."""
    shm_size: str | None = None
    """sizeLimit of the /dev/shm memory volume (a Kubernetes quantity such as 64Gi); None for no limit."""
    job_kind: EksJobKind = EksJobKind.pytorchjob
    """What is rendered: pytorchjob (Kubeflow training operator v1, kubeflow.org/v1 PyTorchJob), trainjob
    (Kubeflow Trainer v2, trainer.kubeflow.org/v1alpha1 TrainJob on a ClusterTrainingRuntime) or hyperpod
    (SageMaker HyperPod training operator, sagemaker.amazonaws.com/v1 HyperPodPyTorchJob)."""
    node_selector: dict[str, str] = field(default_factory=dict)
    """Extra pod nodeSelector labels; with instance=cpu the only ones (CPU node groups have no catalog label),
    e.g. {eks.amazonaws.com/nodegroup: cpu-pool}."""
    training_runtime: str = "torch-distributed"
    """job_kind=trainjob: the ClusterTrainingRuntime the TrainJob references (Trainer v2 ships torch-distributed)."""
    hyperpod_start_timeout_s: int = 3600
    """job_kind=hyperpod: seconds from start to the trainer's first step log line after which the operator flags
    the job as hanging (logMonitoringConfiguration expectedStartCutOffInSeconds; model load and compile count)."""
    hyperpod_step_log_timeout_s: int = 1800
    """job_kind=hyperpod: seconds between two step log lines after which the job counts as hanging
    (expectedRecurringFrequencyInSeconds); keep it above training.log_every_n_steps steps' time."""

    def own_problems(self, checks: Checks) -> None:
        checks.at_least(1, hyperpod_start_timeout_s=self.hyperpod_start_timeout_s,
                        hyperpod_step_log_timeout_s=self.hyperpod_step_log_timeout_s)


@dataclass
class SlurmClusterConfig(Section):
    """What an sbatch script on HyperPod or ParallelCluster needs."""

    partition: str | None = None
    """Slurm partition; None uses the cluster default."""
    account: str | None = None
    """Slurm account; None uses the user's default."""
    container_image: str | None = None
    """enroot/pyxis image (squashfs or registry URI); None runs on the host environment."""
    shared_dir: str = "/fsx"
    """Shared file system for outputs, checkpoints and the compile cache."""
    time_limit: str = "5-00:00:00"
    """sbatch --time; action=submit checks it against the partition's MaxTime (scontrol show partition)."""
    signal_before_s: int = 300
    """Seconds before the time limit at which Slurm sends SIGTERM to the training step (sbatch
    --signal=TERM@<s>), so that it saves a checkpoint and stops; Slurm may send it up to 60 s early."""
    kill_wait_s: int = 30
    """The cluster's KillWait: seconds from SIGTERM (scancel, preemption) to SIGKILL; Slurm's default is 30
    (https://slurm.schedmd.com/slurm.conf.html#OPT_KillWait). The plan warns when a checkpoint takes longer
    to write; action=submit reads the cluster's own value (scontrol show config)."""
    checkpoint_write_gbps: float = 1.0
    """Sustained write throughput of shared_dir in GB/s, for the plan's checkpoint-save estimate (FSx for
    Lustre gives 0.125 to 1 GB/s per TiB stored: https://docs.aws.amazon.com/fsx/latest/LustreGuide/performance.html)."""
    python: str | None = None
    """Python of the environment llm-launch is installed in, the same absolute path on every node (such as
    /fsx/venvs/llm/bin/python); None: the Python running llm-launch. The job runs torchrun as `<python> -m
    llm_launch.train.node_run` (torchrun that exits as its ranks do) with that environment's bin/ first on PATH, so
    it never depends on the submitting shell's PATH. Not used with container_image (the image's own environment runs)."""
    rendezvous_port: int | None = None
    """Port of torchrun's rendezvous store on the first node; None: 29500 (torchrun's default), 41000 on
    Trainium (the port Neuron reserves)."""
    request_gpus: bool = True
    """GPU jobs ask Slurm for their GPUs (sbatch --gpus-per-node, a GPU GRES); false on a cluster whose nodes have no
    GPU GRES configured (some HyperPod clusters): the job still takes whole nodes (--exclusive) and its ranks see
    every GPU of the node. action=submit checks the partition's GRES (sinfo %G)."""
    hyperpod: bool = False
    """SageMaker HyperPod: srun --auto-resume=1, so that after a hardware failure HyperPod replaces the node and
    restarts the step, which resumes from the last checkpoint
    (https://docs.aws.amazon.com/sagemaker/latest/dg/sagemaker-hyperpod-resiliency-slurm-auto-resume.html)."""


@dataclass
class ClusterConfig(Section):
    """Where the job runs and what that place needs."""

    kind: ClusterKind = ClusterKind.local
    """local (torchrun on this machine), sagemaker, eks or slurm."""
    image: str | None = None
    """Container image with this project installed; required for sagemaker and eks."""
    region: str = "us-east-1"
    """AWS region of the job."""
    sagemaker: SageMakerClusterConfig = field(default_factory=SageMakerClusterConfig)
    """SageMaker training-job settings (kind=sagemaker)."""
    eks: EksClusterConfig = field(default_factory=EksClusterConfig)
    """PyTorchJob settings (kind=eks)."""
    slurm: SlurmClusterConfig = field(default_factory=SlurmClusterConfig)
    """sbatch settings (kind=slurm)."""
