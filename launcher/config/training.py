"""The trainer and training sections: nodes and ranks, optimizer, schedule, checkpoints, data, LoRA, DPO."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llm_launch.launcher.config.checks import Checks, Section
from llm_launch.launcher.config.choices import choices
from llm_launch.launcher.config.resilience import WatchdogConfig
from omegaconf import MISSING

Precision = choices("Precision", "bf16", "fp32", "fp8")


LrSchedule = choices("LrSchedule", "cosine", "linear", "constant")


OptimizerName = choices("OptimizerName", "adamw")


CheckpointMode = choices("CheckpointMode", "sync", "async")


AUTO = "auto"
"""training.checkpoint.every_n_steps: pick the interval from max_lost_minutes (train/cadence.py)."""


PreferenceLoss = choices("PreferenceLoss", "sigmoid", "ipo")


@dataclass
class TrainerConfig(Section):
    """How many nodes and processes run the job."""

    num_nodes: int = 1
    """Nodes of the instance type (with min_nodes: the most the job runs on)."""
    min_nodes: int | None = None
    """Elastic node count: the fewest nodes the job continues on after losing nodes (torchrun --nnodes=min:max,
    c10d rendezvous); the trainer lays out its ranks from the world size it finds and keeps the global batch
    (docs/training.md, Resilience). None: a fixed num_nodes."""
    max_restarts: int = 3
    """With min_nodes: times torchrun restarts the workers after a failure or a lost node (--max-restarts)."""
    nproc_per_node: int | None = None
    """Ranks per node; None takes it from the instance catalog (trn2 follows its LNC)."""
    assumed_mfu: float = 0.40
    """Model FLOPs utilisation assumed for the plan's throughput, time and cost estimates."""

    def own_problems(self, checks: Checks) -> None:
        checks.at_least(1, num_nodes=self.num_nodes, nproc_per_node=self.nproc_per_node, min_nodes=self.min_nodes)
        checks.at_least(0, max_restarts=self.max_restarts)
        if self.min_nodes is not None and self.min_nodes > self.num_nodes:
            checks.error("min_nodes", f"{self.min_nodes} is above trainer.num_nodes={self.num_nodes} (the most nodes); "
                         f"set trainer.min_nodes={self.num_nodes} or less")
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


RESUME_CHANGES = ("tokenizer", "data", "seq_len", "global_batch_size")
"""What training.checkpoint.allow_changes may name (launcher/job_record.py)."""


@dataclass
class CheckpointConfig(Section):
    """When, where and how checkpoints are written."""

    dir: str | None = None
    """Checkpoint folder; None means <output_dir>/checkpoints (SageMaker: /opt/ml/checkpoints)."""
    every_n_steps: Any = 1000
    """Save every N steps (and at the last step); 0 saves only at the end; auto picks N after warm-up from the
    measured step and save times so that a failure loses at most max_lost_minutes of work (docs/training.md)."""
    max_lost_minutes: float = 30.0
    """With every_n_steps=auto: the training time a failure may cost (work since the last checkpoint, plus
    the time the loop spends saving)."""
    mode: CheckpointMode = CheckpointMode.sync
    """sync: every rank waits while its shards are written. async: the state is copied to host memory (pinned on
    GPUs) and written in the background while training goes on (DCP async_save); the next save waits for the
    previous one. Either way a checkpoint counts, and `latest` moves, only once every file is written."""
    keep_last: int = 3
    """Checkpoints kept; older ones are deleted after a newer one is complete."""
    resume: bool = True
    """Resume from the latest complete checkpoint in dir when there is one."""
    allow_changes: list[str] = field(default_factory=list)
    """What a resume may change besides the layout (launcher/job_record.py): any of tokenizer, data, seq_len,
    global_batch_size, e.g. [seq_len,global_batch_size]. A changed model is always refused."""

    @property
    def auto_interval(self) -> bool:
        """Whether the interval is picked at run time (every_n_steps=auto)."""
        return self.every_n_steps == AUTO

    @property
    def fixed_every(self) -> int:
        """The configured interval in steps (0 with auto until the trainer picks one)."""
        return 0 if self.auto_interval else int(self.every_n_steps)

    def own_problems(self, checks: Checks) -> None:
        every = self.every_n_steps
        if isinstance(every, bool) or not (every == AUTO or isinstance(every, int)):
            checks.error("every_n_steps", f"must be a number of steps (0: only at the end) or auto, got {every!r}")
        else:
            checks.at_least(0, every_n_steps=None if every == AUTO else every)
        checks.positive(max_lost_minutes=self.max_lost_minutes)
        checks.at_least(1, keep_last=self.keep_last)
        for name in self.allow_changes:
            if name not in RESUME_CHANGES:
                checks.error("allow_changes", f"{name!r} is not a change a resume may make; name any of "
                             f"{', '.join(RESUME_CHANGES)} (a changed model is always refused)")


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
    """bf16 (mixed precision with fp32 master weights), fp32, or fp8: bf16 plus the decoder layers' linear layers
    in float8 with rowwise scaling (torchao float8 training; H100/H200 only, the optional extra `fp8`; docs/training.md)."""
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
    loss_chunk_tokens: int = 0
    """Compute the output projection and cross-entropy over chunks of this many tokens, never holding the full
    fp32 logits (train/chunked_loss.py); 0 is off. Torch engine, single stage without tensor parallelism
    (ddp, fsdp, hsdp), token cross-entropy tasks (not dpo). E.g. 4096."""
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    """Optimizer settings."""
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    """Learning-rate schedule."""
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    """Checkpoint policy."""
    watchdog: WatchdogConfig = field(default_factory=WatchdogConfig)
    """Hang and straggler detection."""
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
        checks.at_least(0, eval_every_n_steps=self.eval_every_n_steps, loss_chunk_tokens=self.loss_chunk_tokens)
