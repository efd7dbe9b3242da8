"""Typed schema of a job: the structured configs Hydra composes into.

Every YAML file under conf/ and recipes/ is merged onto these dataclasses, so a misspelled
key, a value of the wrong type or a choice outside its Enum fails at composition with its full
key path. Each section checks its own ranges (`own_problems`, beside its fields); checks that
span sections live in launcher.validate. This module imports neither torch nor transformers:
the training entrypoints read the same resolved job.yaml through it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from omegaconf import MISSING

from launcher.config.checks import Checks, Section
from launcher.tasks import TASKS


def _choices(name: str, *values: str) -> type[StrEnum]:
    """A StrEnum whose member names are the values users write (OmegaConf matches by name)."""
    return StrEnum(name, [(value, value) for value in values])


AcceleratorKind = _choices("AcceleratorKind", "cpu", "nvidia", "trainium1", "trainium2")
ClusterKind = _choices("ClusterKind", "local", "sagemaker", "eks", "slurm")
Action = _choices("Action", "auto", "plan", "suggest", "render", "submit", "status", "logs", "stop")
TaskName = _choices("TaskName", *TASKS)
ModelFamily = _choices("ModelFamily", "llama", "mistral")
DataParallel = _choices("DataParallel", "auto", "ddp", "fsdp", "hsdp", "zero1", "none")
PipelineSchedule = _choices("PipelineSchedule", "gpipe", "1f1b", "interleaved_1f1b")
ActivationCheckpointing = _choices("ActivationCheckpointing", "none", "selective", "full")
Precision = _choices("Precision", "bf16", "fp32")
LrSchedule = _choices("LrSchedule", "cosine", "linear", "constant")
OptimizerName = _choices("OptimizerName", "adamw")
SageMakerInputMode = _choices("SageMakerInputMode", "File", "FastFile", "Pipe")
RdzvBackend = _choices("RdzvBackend", "c10d", "etcd")
RestartPolicy = _choices("RestartPolicy", "Always", "OnFailure", "Never", "ExitCode")
CleanPodPolicy = _choices("CleanPodPolicy", "All", "Running", "None")
DataSourceFormat = _choices("DataSourceFormat", "jsonl", "parquet", "text", "html", "pdf", "docx")
DedupGranularity = _choices("DedupGranularity", "document", "paragraph")
GradientSync = _choices("GradientSync", "auto", "every_microbatch", "last_microbatch")
MemoryMode = _choices("MemoryMode", "estimate", "traced")
PriceSource = _choices("PriceSource", "catalog", "aws")
SuggestRanking = _choices("SuggestRanking", "step_time", "cost")
PreferenceLoss = _choices("PreferenceLoss", "sigmoid", "ipo")


@dataclass
class ModelConfig(Section):
    """Architecture of the model to train, as in its Hugging Face config.json."""

    name: str = MISSING
    """Short name used in job names, logs and the plan, e.g. llama3_8b."""
    family: ModelFamily = ModelFamily.llama
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

    def own_problems(self, checks: Checks) -> None:
        checks.at_least(1, vocab_size=self.vocab_size, hidden_size=self.hidden_size,
                        intermediate_size=self.intermediate_size, num_layers=self.num_layers,
                        num_attention_heads=self.num_attention_heads, num_key_value_heads=self.num_key_value_heads,
                        head_dim=self.head_dim, max_position_embeddings=self.max_position_embeddings,
                        sliding_window=self.sliding_window)
        checks.positive(rope_theta=self.rope_theta, rms_norm_eps=self.rms_norm_eps)
        if self.num_key_value_heads >= 1 and self.num_attention_heads % self.num_key_value_heads:
            checks.error("num_key_value_heads", f"{self.num_key_value_heads} KV heads do not divide "
                         f"{self.num_attention_heads} query heads")
        if self.head_dim is None and self.num_attention_heads >= 1 and self.hidden_size % self.num_attention_heads:
            checks.error("hidden_size", f"{self.hidden_size} does not divide by the {self.num_attention_heads} "
                         "attention heads, so heads have no whole width; set model.head_dim or change either")


@dataclass
class ParallelismConfig(Section):
    """How the model and the batch are split over ranks: one mesh of dp x tp x pp."""

    tp: int = 1
    """Tensor-parallel degree; must stay within one node and divide the attention heads."""
    pp: int = 1
    """Pipeline-parallel degree; must divide the number of layers."""
    dp: int | None = None
    """Data-parallel degree wanted; None derives it as world / (tp x pp). When set, the node
    count must give exactly this degree, and the error says how many nodes that takes."""
    data_parallel: DataParallel = DataParallel.auto
    """Data-parallel strategy. auto picks the backend's sharding: FSDP2 full shard on GPUs (and CPU),
    ZeRO-1 on Trainium. Explicit: ddp (replicas, gradients all-reduced; both backends), fsdp (FSDP2 full
    shard, GPU), hsdp (shard within a node, replicate across nodes, GPU), zero1 (optimizer state sharded,
    Trainium) or none (no gradient sync: only where dp = 1)."""
    sequence_parallel: bool = False
    """Shard norms and dropout along the sequence (needs tp > 1)."""
    pp_schedule: PipelineSchedule = PipelineSchedule["1f1b"]
    """Pipeline schedule: gpipe, 1f1b or interleaved_1f1b."""
    pp_microbatches: int | None = None
    """Microbatches per pipeline step; None uses the gradient-accumulation count."""
    virtual_pp: int = 1
    """Model chunks per pipeline rank (interleaved_1f1b needs more than 1)."""
    activation_checkpointing: ActivationCheckpointing = ActivationCheckpointing.none
    """Recompute activations in backward: none, selective or full."""
    gradient_sync: GradientSync = GradientSync.auto
    """GPU data parallelism under gradient accumulation: every_microbatch reduce-scatters (FSDP) or all-reduces
    (DDP) each micro-batch's gradients, so FSDP gradients stay sharded (torchtitan's choice); last_microbatch
    skips the sync until the step's last micro-batch: less traffic, but FSDP then holds the stage's whole
    unsharded fp32 gradients on every rank while it accumulates (the plan counts them). auto (the default):
    last_microbatch for ddp, whose gradients are whole on every rank anyway, every_microbatch for fsdp/hsdp."""
    kv_replicator: int | None = None
    """How many times each KV head is replicated so that kv_heads x kv_replicator = tp when tp exceeds
    the KV heads (Trainium). None derives it from the model and tp (1 on GPUs)."""

    def own_problems(self, checks: Checks) -> None:
        checks.at_least(1, tp=self.tp, pp=self.pp, virtual_pp=self.virtual_pp, dp=self.dp,
                        pp_microbatches=self.pp_microbatches, kv_replicator=self.kv_replicator)
        interleaved = self.pp_schedule == PipelineSchedule["interleaved_1f1b"]
        if interleaved and self.virtual_pp < 2:
            checks.error("virtual_pp", "interleaved_1f1b needs virtual_pp of 2 or more")
        if self.virtual_pp > 1 and not interleaved:
            checks.error("pp_schedule", f"virtual_pp={self.virtual_pp} needs pp_schedule=interleaved_1f1b")
        if self.sequence_parallel and self.tp == 1:
            checks.error("sequence_parallel", "needs tp > 1; set parallelism.tp or sequence_parallel=false")
        if self.virtual_pp > 1 and self.pp == 1:
            checks.error("virtual_pp", f"{self.virtual_pp} virtual stages need a pipeline; set parallelism.pp > 1 "
                         "or virtual_pp=1")


@dataclass
class InstanceConfig(Section):
    """One entry of the instance catalog: what a node has, with a source for each figure."""

    name: str = MISSING
    """Catalog key, e.g. ml.p5.48xlarge, or local_cpu for this machine."""
    sagemaker_type: str | None = None
    """SageMaker InstanceType, e.g. ml.trn1.32xlarge; None where SageMaker has no such type."""
    eks_label: str | None = None
    """Value of node.kubernetes.io/instance-type on EKS nodes."""
    accelerator: AcceleratorKind = MISSING
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
    peer_gbytes_per_s: float | None = None
    """Bandwidth from one accelerator to the others of its node, one direction, in GB/s (NVLink or PCIe);
    None where no figure was found, and action=suggest then leaves tensor-parallel traffic out of its model."""
    host_memory_gib: float | None = None
    """Host memory per node in GiB, where the source gives it."""
    k8s_accelerator_resource: str | None = None
    """Kubernetes extended resource requested per node: nvidia.com/gpu or aws.amazon.com/neuron."""
    efa_device_rdma: bool = False
    """Whether EFA does device RDMA on this type (FI_EFA_USE_DEVICE_RDMA=1: p4d/p4de and Trainium)."""
    price_per_hour_usd: float | None = None
    """On-demand price per node-hour in USD (us-east-1 unless the source says otherwise)."""
    price_date: str = ""
    """Date the price was read."""
    price_source: str = ""
    """Where the price was read."""
    sources: dict[str, str] = field(default_factory=dict)
    """Source of each hardware figure, keyed by field name."""

    def own_problems(self, checks: Checks) -> None:
        checks.at_least(1, accelerators_per_node=self.accelerators_per_node,
                        cores_per_accelerator=self.cores_per_accelerator)
        checks.at_least(0, efa_interfaces=self.efa_interfaces)
        checks.positive(device_memory_gib=self.device_memory_gib,
                        bf16_tflops_per_accelerator=self.bf16_tflops_per_accelerator)
        if self.accelerator == AcceleratorKind.trainium2:
            if self.logical_core_config not in (None, 1, 2):
                checks.error("logical_core_config", f"LNC must be 1 or 2 on trn2, got {self.logical_core_config}")
        elif self.logical_core_config not in (None, 1):
            checks.error("logical_core_config", "only trn2 has a logical core setting; leave it null")


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
    """Elastic rendezvous backend: c10d or etcd."""
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
    torch.distributed.run` with that environment's bin/ first on PATH, so it never depends on the submitting
    shell's PATH. Not used with container_image (the image's own environment runs)."""
    rendezvous_port: int | None = None
    """Port of torchrun's rendezvous store on the first node; None: 29500 (torchrun's default), 41000 on
    Trainium (the port Neuron reserves)."""
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


@dataclass
class TrainerConfig(Section):
    """How many nodes and processes run the job."""

    num_nodes: int = 1
    """Nodes of the instance type."""
    nproc_per_node: int | None = None
    """Ranks per node; None takes it from the instance catalog (trn2 follows its LNC)."""
    assumed_mfu: float = 0.40
    """Model FLOPs utilisation assumed for the plan's throughput, time and cost estimates."""

    def own_problems(self, checks: Checks) -> None:
        checks.at_least(1, num_nodes=self.num_nodes, nproc_per_node=self.nproc_per_node)
        if not 0 < self.assumed_mfu <= 1:
            checks.error("assumed_mfu", f"must be in (0, 1], got {self.assumed_mfu}; e.g. 0.4")


@dataclass
class OptimizerConfig(Section):
    """AdamW and gradient clipping."""

    name: OptimizerName = OptimizerName.adamw
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

    def own_problems(self, checks: Checks) -> None:
        checks.positive(lr=self.lr, eps=self.eps)
        checks.at_least(0, weight_decay=self.weight_decay, grad_clip=self.grad_clip)
        checks.fraction(open_high=True, beta1=self.beta1, beta2=self.beta2)


@dataclass
class ScheduleConfig(Section):
    """Learning-rate schedule: linear warm-up, then decay."""

    name: LrSchedule = LrSchedule.cosine
    """Decay after warm-up: cosine, linear or constant."""
    warmup_steps: int = 100
    """Steps of linear warm-up from 0 to the peak."""
    min_lr_ratio: float = 0.1
    """Final learning rate as a fraction of the peak."""

    def own_problems(self, checks: Checks) -> None:
        checks.at_least(0, warmup_steps=self.warmup_steps)
        checks.fraction(min_lr_ratio=self.min_lr_ratio)


@dataclass
class CheckpointConfig(Section):
    """When and where checkpoints are written."""

    dir: str | None = None
    """Checkpoint folder; None means <output_dir>/checkpoints (SageMaker: /opt/ml/checkpoints)."""
    every_n_steps: int = 1000
    """Save every N steps (and at the last step); 0 saves only at the end."""
    keep_last: int = 3
    """Checkpoints kept; older ones are deleted after a newer one is complete."""
    resume: bool = True
    """Resume from the latest complete checkpoint in dir when there is one."""

    def own_problems(self, checks: Checks) -> None:
        checks.at_least(0, every_n_steps=self.every_n_steps)
        checks.at_least(1, keep_last=self.keep_last)


@dataclass
class DataConfig(Section):
    """Training and validation data and the tokenizer."""

    train_path: str = MISSING
    """Packed token shards (a folder with index.json) or a JSONL/text corpus packed at start."""
    valid_path: str | None = None
    """Held-out data in the same format; None disables validation."""
    tokenizer_path: str = MISSING
    """Folder with a Hugging Face tokenizer (tokenizer.json)."""
    text_field: str = "text"
    """Field holding the text in JSONL corpora."""
    document_masking: bool = False
    """Keep attention inside each packed document (positions restart after every EOS). Without
    pipeline parallelism only; on GPUs it trades the flash kernel for a masked one."""
    pack_dir: str | None = None
    """Folder a JSONL or text corpus is packed into at job start; None means <output_dir>/data (SageMaker:
    /opt/ml/input/packed, on each instance's own volume, never uploaded with the model). Nodes may share
    it or each have their own: each distinct copy is packed once (docs/data.md)."""

    def own_problems(self, checks: Checks) -> None:
        if not self.text_field:
            checks.error("text_field", "must name the JSONL field holding the text, e.g. text")


LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""The linear layers of transformers' Llama and Mistral decoder blocks, which LoRA can wrap."""


@dataclass
class LoraConfig(Section):
    """Low-rank adapters (peft LoRA): train small adapters instead of every weight."""

    enabled: bool = False
    """Train LoRA adapters only; the base model is frozen (and loaded whole on each rank)."""
    rank: int = 16
    """Adapter rank r."""
    alpha: float = 32.0
    """Scaling numerator: adapters are scaled by alpha / rank."""
    dropout: float = 0.0
    """Dropout on the adapter input."""
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    """Names of the linear layers that get adapters."""

    def own_problems(self, checks: Checks) -> None:
        if self.enabled:
            checks.at_least(1, rank=self.rank)
            checks.positive(alpha=self.alpha)
            checks.fraction(open_high=True, dropout=self.dropout)
            if not self.target_modules:
                checks.error("target_modules", "must name at least one linear layer, e.g. [q_proj, v_proj]")
            unknown = [name for name in self.target_modules if name not in LORA_TARGETS]
            if unknown:
                checks.error("target_modules", f"{', '.join(unknown)}: no such layer in a Llama or Mistral block "
                             f"(peft would skip it silently); use names from {', '.join(LORA_TARGETS)}")


@dataclass
class PreferenceConfig(Section):
    """Preference tuning (task=dpo): the loss over policy and reference log-probabilities (docs/dpo.md)."""

    loss: PreferenceLoss = PreferenceLoss.sigmoid
    """sigmoid (DPO; with label_smoothing > 0, conservative DPO) or ipo."""
    beta: float = 0.1
    """Strength of the pull towards the reference model (the KL coefficient); > 0."""
    label_smoothing: float = 0.0
    """Conservative DPO: the assumed probability that a pair's preference label is flipped, in [0, 0.5)."""
    length_normalized: bool = False
    """Average each response's log-probability over its tokens instead of summing (IPO's usual choice)."""

    def own_problems(self, checks: Checks) -> None:
        checks.positive(beta=self.beta)
        if not 0 <= self.label_smoothing < 0.5:
            checks.error("label_smoothing", f"must be in [0, 0.5), got {self.label_smoothing}")
        elif self.label_smoothing > 0 and self.loss != PreferenceLoss.sigmoid:
            checks.error("label_smoothing", "smooths the sigmoid loss only (conservative DPO); set it to 0 or "
                         "loss=sigmoid")


@dataclass
class TrainingConfig(Section):
    """What one training run does (cpt, sft, eval): steps, batch, optimizer, checkpoints and data."""
    max_steps: int = MISSING
    """Optimizer steps to run."""
    seq_len: int = MISSING
    """Tokens per sample."""
    global_batch_size: int = MISSING
    """Samples per optimizer step over all data-parallel ranks."""
    micro_batch_size: int = 1
    """Samples per forward pass on one rank."""
    precision: Precision = Precision.bf16
    """bf16 (mixed precision with fp32 master weights) or fp32."""
    seed: int = 1234
    """Seed for weights init, data order and dropout."""
    log_every_n_steps: int = 1
    """Print and record metrics every N steps."""
    eval_every_n_steps: int = 0
    """Validation loss every N steps; 0 only at the end (when valid_path is set)."""
    eval_batches: int = 4
    """Size of the validation set in global batches (the first eval_batches x global_batch_size rows of
    valid_path), so that validation loss is comparable across layouts."""
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
    lora: LoraConfig = field(default_factory=LoraConfig)
    """LoRA fine-tuning (off: every weight trains)."""
    preference: PreferenceConfig = field(default_factory=PreferenceConfig)
    """Preference tuning settings (task=dpo only)."""

    def own_problems(self, checks: Checks) -> None:
        checks.at_least(1, max_steps=self.max_steps, seq_len=self.seq_len, global_batch_size=self.global_batch_size,
                        micro_batch_size=self.micro_batch_size, log_every_n_steps=self.log_every_n_steps,
                        eval_batches=self.eval_batches)
        checks.at_least(0, eval_every_n_steps=self.eval_every_n_steps)


@dataclass
class NeuronConfig(Section):
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
    monitor: bool = False
    """Run neuron-monitor beside training and record NeuronCore utilisation and device memory with every logged
    step (metrics.jsonl and TensorBoard); needs the Neuron tools in the image."""
    checkpoint_xser: bool = False
    """Save NxD checkpoints with xser (one file per tensor: less host memory while saving, advised for
    70B-class jobs). llm-launch-convert reads only the plain torch.save layout, so leave it off to convert."""

    def own_problems(self, checks: Checks) -> None:
        checks.at_least(1, precompile_steps=self.precompile_steps)

TrackingBackend = _choices("TrackingBackend", "tensorboard", "mlflow", "wandb")
"""Where a run's metrics go besides metrics.jsonl (train/tracking)."""
WandbMode = _choices("WandbMode", "online", "offline")
"""wandb.init's mode: online sends to the W&B server, offline writes the run under output_dir/wandb."""


@dataclass
class MlflowConfig(Section):
    """An MLflow tracking server (pip install 'llm-launch[mlflow]')."""

    tracking_uri: str | None = None
    """http(s)://host:port of a tracking server, a local folder (file store), or the ARN of a SageMaker
    MLflow tracking server (arn:aws:sagemaker:<region>:<account>:mlflow-tracking-server/<name>, through the
    sagemaker-mlflow plugin and the job's AWS credentials); None reads MLFLOW_TRACKING_URI where the job runs."""
    experiment: str | None = None
    """Experiment the run is recorded in; None uses job_name."""
    run_name: str | None = None
    """Name of the run; None uses job_name. A resumed job continues the same run (output_dir/mlflow_run.json)."""


@dataclass
class WandbConfig(Section):
    """A Weights & Biases project (pip install 'llm-launch[wandb]'). The API key is never part of the config:
    WANDB_API_KEY in the job's environment, or api_key_secret."""

    project: str | None = None
    """W&B project; None uses job_name."""
    entity: str | None = None
    """W&B team or user; None uses the key's default entity."""
    mode: WandbMode = WandbMode.online
    """online, or offline (the run is written under output_dir/wandb; `wandb sync` uploads it later)."""
    api_key_secret: str | None = None
    """Name or ARN of an AWS Secrets Manager secret holding the API key (the plain key, or JSON with an
    api_key field), read by the job with its own AWS credentials when WANDB_API_KEY is not set."""


@dataclass
class TrackingConfig(Section):
    """Experiment tracking: each backend records the resolved job, the plan, every logged metric and metrics.json."""

    backends: list[TrackingBackend] = field(default_factory=lambda: [TrackingBackend.tensorboard])
    """Trackers of the run, any of tensorboard, mlflow and wandb; metrics.jsonl is always written."""
    required: bool = True
    """A missing client or unreachable server stops the job before training (one line); false makes it a
    warning and the run goes on without that tracker."""
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    """MLflow settings (backends has mlflow)."""
    wandb: WandbConfig = field(default_factory=WandbConfig)
    """W&B settings (backends has wandb)."""




@dataclass
class DataSourceConfig(Section):
    """One input of data preparation: a file or a folder of files of one format."""

    name: str = MISSING
    """Short name of the source, used in the manifest and in mixing (e.g. domain, general)."""
    path: str = MISSING
    """A file, or a folder read recursively for files of the format (sorted by path, for determinism)."""
    format: DataSourceFormat = DataSourceFormat.jsonl
    """jsonl, parquet, text (one document per file), html, pdf or docx."""
    text_field: str = "text"
    """Field (JSONL key or Parquet column) holding the document text."""
    id_field: str | None = None
    """Field holding a document id for the manifest's examples; None uses file:line."""
    weight: float = 1.0
    """Share of the mixed corpus (normalised over all sources), measured in characters of kept text.
    The source that runs out first is used whole; the others are subsampled to their share."""

    def own_problems(self, checks: Checks) -> None:
        if not self.name:
            checks.error("name", "must be a non-empty name, e.g. web")
        if not self.weight > 0:
            checks.error("weight", f"must be positive (a share of the mix), got {self.weight}")
        if self.format in (DataSourceFormat.jsonl, DataSourceFormat.parquet) and not self.text_field:
            checks.error("text_field", "must name the field holding the text, e.g. text")


@dataclass
class DataFilterConfig(Section):
    """Quality filters; each one that drops a document is counted in the manifest under its name."""

    min_words: int = 5
    """Drop documents with fewer words (whitespace-separated tokens)."""
    max_words: int | None = None
    """Drop documents with more words; None for no upper limit."""
    min_mean_word_length: float = 2.0
    """Drop documents whose mean word length (characters) is below this."""
    max_mean_word_length: float = 12.0
    """Drop documents whose mean word length is above this (tables of hashes, minified code)."""
    min_alpha_word_fraction: float = 0.6
    """Drop documents where fewer than this share of words contain an alphabetic character; 0 disables."""
    max_duplicate_line_fraction: float = 0.3
    """Drop documents where more than this share of non-empty lines repeat an earlier line; 1 disables."""
    ngram_size: int = 3
    """n of the repeated n-gram filter (word n-grams)."""
    max_duplicate_ngram_fraction: float = 0.3
    """Drop documents where n-grams occurring more than once cover more than this share of the
    characters of all n-grams; 1 disables."""
    languages: list[str] = field(default_factory=list)
    """Keep only these languages (ISO 639-1 codes as langdetect names them, e.g. en); empty disables.
    Needs the langdetect package."""
    min_language_score: float = 0.8
    """With languages: the detected language's probability must reach this."""
    url_field: str | None = None
    """Record field holding the document's URL for the URL filter; None disables it."""
    blocked_domains: list[str] = field(default_factory=list)
    """Drop documents whose URL host is one of these domains or a subdomain of one."""
    required_metadata: dict[str, str] = field(default_factory=dict)
    """Keep only records whose field has exactly this value (e.g. {license: cc-by}); JSONL/Parquet only."""
    blocked_metadata: dict[str, str] = field(default_factory=dict)
    """Drop records whose field has exactly this value (e.g. {split: test}); JSONL/Parquet only."""

    def own_problems(self, checks: Checks) -> None:
        checks.fraction(min_alpha_word_fraction=self.min_alpha_word_fraction,
                        max_duplicate_line_fraction=self.max_duplicate_line_fraction,
                        max_duplicate_ngram_fraction=self.max_duplicate_ngram_fraction,
                        min_language_score=self.min_language_score)
        checks.at_least(0, min_words=self.min_words)
        checks.at_least(1, ngram_size=self.ngram_size)
        if self.max_words is not None and self.max_words < self.min_words:
            checks.error("max_words", f"{self.max_words} is below min_words {self.min_words}; raise it or set it "
                         "to null")
        if not 0 <= self.min_mean_word_length <= self.max_mean_word_length:
            checks.error("min_mean_word_length", f"need 0 <= min ({self.min_mean_word_length}) <= "
                         f"max_mean_word_length ({self.max_mean_word_length})")
        if self.blocked_domains and not self.url_field:
            checks.error("url_field", f"blocked_domains needs the record field holding the URL; set "
                         f"{checks.key('url_field')}=url")


@dataclass
class DedupConfig(Section):
    """Exact and near-duplicate removal; the first document of each cluster (in reading order) is kept."""

    exact: bool = True
    """Remove exact duplicates (SHA-256 of the normalised text)."""
    near: bool = True
    """Remove near duplicates with MinHash LSH (datasketch)."""
    granularity: DedupGranularity = DedupGranularity.document
    """document (drop whole documents) or paragraph (drop repeated paragraphs, split on blank lines)."""
    threshold: float = 0.8
    """Estimated Jaccard similarity of word-shingle sets at or above which two units are duplicates."""
    num_perm: int = 128
    """MinHash permutations: more is more precise and slower."""
    shingle_size: int = 5
    """Words per shingle."""

    def own_problems(self, checks: Checks) -> None:
        if not 0 < self.threshold <= 1:
            checks.error("threshold", f"must be in (0, 1], got {self.threshold}; e.g. 0.8")
        checks.at_least(16, num_perm=self.num_perm)
        checks.at_least(1, shingle_size=self.shingle_size)


@dataclass
class DataSplitConfig(Section):
    """Train/validation split, by whole documents after mixing."""

    valid_fraction: float = 0.01
    """Share of documents held out for validation; 0 writes no validation split."""

    def own_problems(self, checks: Checks) -> None:
        checks.fraction(open_high=True, valid_fraction=self.valid_fraction)


@dataclass
class DataOutputConfig(Section):
    """Where and how the packed shards are written."""

    dir: str | None = None
    """Output folder (train/, valid/ and manifest.json); None means <output_dir>/data."""
    shard_chars: int = 200_000_000
    """Characters of text per shard (about 4 characters per token: 200 M characters make a shard of
    roughly 50 M tokens). Each shard is tokenized, packed and written on its own (its tail that does not
    fill a row is counted as remainder), so that a rerun skips finished shards and ranks build shards
    in parallel."""
    keep_work: bool = False
    """Keep the intermediate work folder (selected documents per shard) after a successful run."""
    overwrite: bool = False
    """Replace a finished dataset in dir that was prepared from other inputs or settings (its manifest's
    fingerprint differs); false refuses, so nothing is overwritten by accident."""

    def own_problems(self, checks: Checks) -> None:
        checks.at_least(1, shard_chars=self.shard_chars)


@dataclass
class DataPrepConfig(Section):
    """Data preparation (task=prepare): raw documents to packed token shards and a manifest."""

    sources: list[DataSourceConfig] = field(default_factory=list)
    """Inputs and their mixing weights."""
    filters: DataFilterConfig = field(default_factory=DataFilterConfig)
    """Quality filters."""
    dedup: DedupConfig = field(default_factory=DedupConfig)
    """Deduplication."""
    split: DataSplitConfig = field(default_factory=DataSplitConfig)
    """Train/validation split."""
    output: DataOutputConfig = field(default_factory=DataOutputConfig)
    """Output folder and shard sizes."""
    seq_len: int | None = None
    """Tokens per packed row; None uses training.seq_len (so the training job reads the rows as they are)."""
    tokenizer_path: str | None = None
    """Hugging Face tokenizer folder; None uses training.data.tokenizer_path."""
    seed: int | None = None
    """Seed of mixing, shuffling and the split; None uses training.seed."""
    workers: int = 0
    """Processes for reading, filtering and MinHash, and threads of the tokenizer; 0 uses every core."""
    shuffle: bool = True
    """Shuffle documents (seeded) after mixing, so sources interleave; false keeps reading order."""

    def own_problems(self, checks: Checks) -> None:
        checks.at_least(0, workers=self.workers)
        checks.at_least(2, seq_len=self.seq_len)
        names = [source.name for source in self.sources]
        for index, name in enumerate(names):
            if name and names.count(name) > 1:
                checks.error(f"sources[{index}].name", f"'{name}' names two sources; give each its own name")


@dataclass
class PlanConfig(Section):
    """How the plan is worked out, and what action=suggest searches."""

    memory: MemoryMode = MemoryMode.estimate
    """estimate (the analytical rules of launcher/memory.py, torch-free, instant) or traced (build the job's
    real model and layout on fake tensors and measure one step's peak per rank with torch's memory tracker;
    GPU layouts with pp=1, minutes for 70B-class models)."""
    prices: PriceSource = PriceSource.catalog
    """catalog (the instance entry's dated price) or aws (the AWS Price List API through boto3, which needs
    AWS credentials; the catalog price is used when the API gives none)."""
    top: int = 10
    """Rows action=suggest prints."""
    min_nodes: int | None = None
    """Fewest nodes action=suggest tries; None means trainer.num_nodes."""
    max_nodes: int | None = None
    """Most nodes action=suggest tries; None means trainer.num_nodes."""
    rank_by: SuggestRanking = SuggestRanking.step_time
    """Order of the suggestions: step_time (fastest first) or cost (cheapest per billion tokens first)."""

    def own_problems(self, checks: Checks) -> None:
        checks.at_least(1, top=self.top, min_nodes=self.min_nodes, max_nodes=self.max_nodes)
        if self.min_nodes is not None and self.max_nodes is not None and self.min_nodes > self.max_nodes:
            checks.error("min_nodes", f"{self.min_nodes} is above plan.max_nodes={self.max_nodes}; swap them")


JOB_NAME_MAX = 128
"""Longest job name: it becomes a folder name (255 bytes at most on Linux) and the base of remote job names."""


@dataclass
class JobConfig(Section):
    """A whole job: the root of the composed configuration and of job.yaml."""

    job_name: str = MISSING
    """Name of the job; the default output folder and remote job names derive from it."""
    task: TaskName = TaskName.cpt
    """What the job runs (launcher.tasks.TASKS): cpt (continual pre-training, or pre-training from scratch),
    sft (supervised fine-tuning), eval (held-out loss of a model), smoke (an allreduce over every rank) or
    prepare (data preparation: raw documents to packed shards, reads only data_prep)."""
    action: Action = Action.auto
    """plan, suggest (rank the layouts that fit), render, submit, or auto (submit for local runs, render for
    remote clusters)."""
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
    """The training run itself (tasks that train or evaluate a model)."""
    neuron: NeuronConfig = field(default_factory=NeuronConfig)
    """Trainium compile and numerics settings."""
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    """Experiment tracking (TensorBoard, MLflow, W&B)."""
    data_prep: DataPrepConfig = field(default_factory=DataPrepConfig)
    """Data preparation settings (task=prepare)."""
    plan: PlanConfig = field(default_factory=PlanConfig)
    """How the plan measures memory and prices, and what action=suggest searches."""

    def own_problems(self, checks: Checks) -> None:
        name = self.job_name
        if not name or not all(c.isalnum() or c in "-_." for c in name):
            checks.error("job_name", f"'{name}' must be non-empty letters, digits, '-', '_' or '.'")
        elif name.startswith("."):
            checks.error("job_name", f"'{name}' starts with '.': the default output folder outputs/{name} would be "
                         "hidden or, for '..', the current folder; start it with a letter or digit")
        if len(name) > JOB_NAME_MAX:
            checks.error("job_name", f"is {len(name)} characters long; keep it to {JOB_NAME_MAX} (it names the "
                         "output folder and the remote jobs)")
