"""Typed schema of a job: the structured configs Hydra composes into.

Every YAML file under conf/ and recipes/ is merged onto these dataclasses, so a misspelled
key or a value of the wrong type fails at composition with its full key path. Choices
(strings from a fixed set) are checked by launcher.validate, which reports every problem
at once. This module imports neither torch nor transformers: the training entrypoints
read the same resolved job.yaml through it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

ACCELERATOR_KINDS = ("cpu", "nvidia", "trainium1", "trainium2")
CLUSTER_KINDS = ("local", "sagemaker", "eks", "slurm")
ACTIONS = ("auto", "plan", "render", "submit")
MODEL_FAMILIES = ("llama", "mistral")
DATA_PARALLEL_MODES = ("ddp", "fsdp", "hsdp", "zero1", "none")
PIPELINE_SCHEDULES = ("gpipe", "1f1b", "interleaved_1f1b")
ACTIVATION_CHECKPOINTING = ("none", "selective", "full")
PRECISIONS = ("bf16", "fp32")
LR_SCHEDULES = ("cosine", "linear", "constant")
OPTIMIZERS = ("adamw",)
SAGEMAKER_INPUT_MODES = ("File", "FastFile", "Pipe")


@dataclass
class ModelConfig:
    """Architecture of the model to train, as in its Hugging Face config.json."""

    name: str = MISSING
    """Short name used in job names, logs and the plan, e.g. llama3_8b."""
    family: str = "llama"
    """Architecture family; selects the transformers model class: llama or mistral."""
    source: str = ""
    """Where the numbers below come from (the published config.json), for the reader."""
    vocab_size: int = MISSING
    """Number of token embeddings (config.json vocab_size)."""
    hidden_size: int = MISSING
    """Width of the residual stream (config.json hidden_size)."""
    intermediate_size: int = MISSING
    """Width of the SwiGLU MLP (config.json intermediate_size)."""
    num_layers: int = MISSING
    """Decoder layers (config.json num_hidden_layers)."""
    num_attention_heads: int = MISSING
    """Query heads (config.json num_attention_heads)."""
    num_key_value_heads: int = MISSING
    """Key/value heads; fewer than query heads means grouped-query attention."""
    head_dim: int | None = None
    """Per-head width; None means hidden_size // num_attention_heads."""
    max_position_embeddings: int = MISSING
    """Longest sequence the position embedding is trained for; seq_len must not exceed it."""
    rope_theta: float = 10000.0
    """RoPE base frequency."""
    rms_norm_eps: float = 1e-5
    """Epsilon of the RMS norms."""
    tie_word_embeddings: bool = False
    """Whether the output projection shares the input embedding's weights."""
    sliding_window: int | None = None
    """Sliding attention window (Mistral 7B v0.1 uses 4096); None for full attention."""
    pretrained_path: str | None = None
    """Hugging Face checkpoint folder to continue from; None starts from random weights."""


@dataclass
class ParallelismConfig:
    """How the model and the batch are split over ranks: one mesh of dp x tp x pp."""

    tp: int = 1
    """Tensor-parallel degree; must stay within one node and divide the attention heads."""
    pp: int = 1
    """Pipeline-parallel degree; must divide the number of layers."""
    dp: int | None = None
    """Data-parallel degree wanted; None derives it as world / (tp x pp). When set, the node
    count must give exactly this degree, and the error says how many nodes that takes."""
    data_parallel: str = "fsdp"
    """Data-parallel strategy: ddp, fsdp (FSDP2 full shard), hsdp (shard within a node,
    replicate across nodes), zero1 (Trainium optimizer sharding) or none."""
    sequence_parallel: bool = False
    """Shard norms and dropout along the sequence (needs tp > 1)."""
    pp_schedule: str = "1f1b"
    """Pipeline schedule: gpipe, 1f1b or interleaved_1f1b."""
    pp_microbatches: int | None = None
    """Microbatches per pipeline step; None uses the gradient-accumulation count."""
    virtual_pp: int = 1
    """Model chunks per pipeline rank (interleaved_1f1b needs more than 1)."""
    activation_checkpointing: str = "none"
    """Recompute activations in backward: none, selective or full."""
    kv_replicator: int | None = None
    """Trainium only: how many times each KV head is replicated so that kv_heads x
    kv_replicator = tp. None derives it from the model and tp."""


@dataclass
class InstanceConfig:
    """One entry of the instance catalog: what a node has, with a source for each figure."""

    name: str = MISSING
    """Catalog key, e.g. ml.p5.48xlarge, or local_cpu for this machine."""
    sagemaker_type: str | None = None
    """SageMaker InstanceType, e.g. ml.trn1.32xlarge; None where SageMaker has no such type."""
    eks_label: str | None = None
    """Value of node.kubernetes.io/instance-type on EKS nodes."""
    accelerator: str = MISSING
    """Accelerator kind: cpu, nvidia, trainium1 or trainium2."""
    accelerator_name: str = ""
    """Human name of the accelerator, e.g. H100 SXM or Trainium2."""
    accelerators_per_node: int = MISSING
    """GPUs or Trainium chips per node (for cpu: worker processes per node)."""
    cores_per_accelerator: int = 1
    """Physical NeuronCores per Trainium chip (1 for GPUs and CPUs)."""
    logical_core_config: int | None = None
    """trn2 only: physical cores grouped into one logical core (LNC, 1 or 2; default 2)."""
    device_memory_gib: float = MISSING
    """Memory per accelerator in GiB (for cpu: host memory usable per process)."""
    bf16_tflops_per_accelerator: float | None = None
    """Dense bf16 peak per accelerator in TFLOP/s, the MFU denominator; None if unknown."""
    efa_interfaces: int = 0
    """EFA network interfaces per node; 0 means the type cannot run multi-node jobs."""
    network_gbps: float | None = None
    """Node network bandwidth in Gbit/s."""
    host_memory_gib: float | None = None
    """Host memory per node in GiB, where the source gives it."""
    k8s_accelerator_resource: str | None = None
    """Kubernetes extended resource requested per node: nvidia.com/gpu or aws.amazon.com/neuron."""
    price_per_hour_usd: float | None = None
    """On-demand price per node-hour in USD (us-east-1 unless the source says otherwise)."""
    price_date: str = ""
    """Date the price was read."""
    price_source: str = ""
    """Where the price was read."""
    sources: dict[str, str] = field(default_factory=dict)
    """Source of each hardware figure, keyed by field name."""


@dataclass
class SageMakerClusterConfig:
    """What a SageMaker training job needs beyond the instance type."""

    role_arn: str | None = None
    """IAM role the training job assumes."""
    s3_output_uri: str | None = None
    """s3:// prefix for the job's output (OutputDataConfig.S3OutputPath)."""
    s3_checkpoint_uri: str | None = None
    """s3:// prefix synced with /opt/ml/checkpoints; reusing it resumes the run."""
    s3_code_uri: str | None = None
    """s3:// prefix the project's code is uploaded to before submission."""
    input_mode: str = "FastFile"
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


@dataclass
class EksClusterConfig:
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
    rdzv_backend: str = "c10d"
    """Elastic rendezvous backend: c10d or etcd."""
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    """Pod tolerations, as Kubernetes writes them."""
    hf_token_secret: str | None = None
    """Name of a Secret whose key 'token' holds a Hugging Face token (never the token itself)."""


@dataclass
class SlurmClusterConfig:
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
    """sbatch --time."""


@dataclass
class ClusterConfig:
    """Where the job runs and what that place needs."""

    kind: str = "local"
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


@dataclass
class TrainerConfig:
    """How many nodes and processes run the job."""

    num_nodes: int = 1
    """Nodes of the instance type."""
    nproc_per_node: int | None = None
    """Ranks per node; None takes it from the instance catalog (trn2 follows its LNC)."""
    assumed_mfu: float = 0.40
    """Model FLOPs utilisation assumed for the plan's throughput, time and cost estimates."""


@dataclass
class OptimizerConfig:
    """AdamW and gradient clipping."""

    name: str = "adamw"
    """Optimizer; adamw is the one supported."""
    lr: float = 3e-4
    """Peak learning rate."""
    weight_decay: float = 0.1
    """Decoupled weight decay."""
    beta1: float = 0.9
    """Adam beta1."""
    beta2: float = 0.95
    """Adam beta2."""
    eps: float = 1e-8
    """Adam epsilon."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value; 0 disables clipping."""


@dataclass
class ScheduleConfig:
    """Learning-rate schedule: linear warm-up, then decay."""

    name: str = "cosine"
    """Decay after warm-up: cosine, linear or constant."""
    warmup_steps: int = 100
    """Steps of linear warm-up from 0 to the peak."""
    min_lr_ratio: float = 0.1
    """Final learning rate as a fraction of the peak."""


@dataclass
class CheckpointConfig:
    """When and where checkpoints are written."""

    dir: str | None = None
    """Checkpoint folder; None means <output_dir>/checkpoints (SageMaker: /opt/ml/checkpoints)."""
    every_n_steps: int = 1000
    """Save every N steps (and at the last step); 0 saves only at the end."""
    keep_last: int = 3
    """Checkpoints kept; older ones are deleted after a newer one is complete."""
    resume: bool = True
    """Resume from the latest complete checkpoint in dir when there is one."""


@dataclass
class DataConfig:
    """Training and validation data and the tokenizer."""

    train_path: str = MISSING
    """Packed token shards (a folder with index.json) or a JSONL/text corpus packed at start."""
    valid_path: str | None = None
    """Held-out data in the same format; None disables validation."""
    tokenizer_path: str = MISSING
    """Folder with a Hugging Face tokenizer (tokenizer.json)."""
    text_field: str = "text"
    """Field holding the text in JSONL corpora."""


@dataclass
class TrainingConfig:
    """What one training run does: task, steps, batch, optimizer, checkpoints and data."""

    task: str = "cpt"
    """What the job runs: cpt (continual pre-training / pre-training), sft (supervised fine-tuning), or
    another task of launcher.tasks.TASKS."""
    max_steps: int = MISSING
    """Optimizer steps to run."""
    seq_len: int = MISSING
    """Tokens per sample."""
    global_batch_size: int = MISSING
    """Samples per optimizer step over all data-parallel ranks."""
    micro_batch_size: int = 1
    """Samples per forward pass on one rank."""
    precision: str = "bf16"
    """bf16 (mixed precision with fp32 master weights) or fp32."""
    seed: int = 1234
    """Seed for weights init, data order and dropout."""
    log_every_n_steps: int = 1
    """Print and record metrics every N steps."""
    eval_every_n_steps: int = 0
    """Validation loss every N steps; 0 only at the end (when valid_path is set)."""
    eval_batches: int = 4
    """Micro-batches per validation pass."""
    compile: bool = False
    """torch.compile the model (GPU)."""
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    """Optimizer settings."""
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    """Learning-rate schedule."""
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    """Checkpoint policy."""
    data: DataConfig = field(default_factory=DataConfig)
    """Data and tokenizer."""


@dataclass
class NeuronConfig:
    """Trainium-only settings: the compile step, its cache and numerics (ignored on GPU and CPU)."""

    precompile: bool = False
    """Run neuron_parallel_compile with the training topology for precompile_steps steps before training."""
    precompile_steps: int = 10
    """Steps the precompile phase traces (graphs, not training progress: it writes no checkpoint)."""
    compile_cache_url: str | None = None
    """NEURON_COMPILE_CACHE_URL: a shared file-system path or s3:// prefix; None uses the cluster's
    shared storage (EKS mount_path, Slurm shared_dir) or the instance's local default. Jobs never delete it."""
    stochastic_rounding: bool = True
    """bf16 stochastic rounding (NEURON_RT_STOCHASTIC_ROUNDING_EN) when training.precision is bf16."""
    fused_qkv: bool = False
    """Use NxD's fused QKV projection instead of separate q, k and v under qkv_proj."""
    cc_flags: list[str] = field(default_factory=list)
    """Extra neuronx-cc flags appended to NEURON_CC_FLAGS."""
    checkpoint_xser: bool = False
    """Save NxD checkpoints with xser (one file per tensor: less host memory while saving, advised for
    70B-class jobs). llm-launch-convert reads only the plain torch.save layout, so leave it off to convert."""


@dataclass
class JobConfig:
    """A whole job: the root of the composed configuration and of job.yaml."""

    job_name: str = MISSING
    """Name of the job; the default output folder and remote job names derive from it."""
    action: str = "auto"
    """plan, render, submit, or auto (submit for local runs, render for remote clusters)."""
    output_dir: str = MISSING
    """Folder for plan.json, job.yaml, rendered files and (local runs) checkpoints and metrics."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Model architecture."""
    parallelism: ParallelismConfig = field(default_factory=ParallelismConfig)
    """Parallel layout."""
    instance: InstanceConfig = field(default_factory=InstanceConfig)
    """Instance type of every node."""
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    """Where the job runs."""
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    """Nodes and ranks."""
    training: TrainingConfig = field(default_factory=TrainingConfig)
    """The training run itself."""
    neuron: NeuronConfig = field(default_factory=NeuronConfig)
    """Trainium compile and numerics settings."""
