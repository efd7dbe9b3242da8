"""Typed schema of a job: the structured configs Hydra composes into.

Every YAML file under conf/ and recipes/ is merged onto these dataclasses, so a misspelled
key, a value of the wrong type or a choice outside its Enum fails at composition with its full
key path. Each section checks its own ranges (`own_problems`, beside its fields); checks that
span sections live in llm_launch.launcher.validate. This module imports neither torch nor transformers:
the training entrypoints read the same resolved job.yaml through it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from llm_launch.launcher.config.checks import Checks, Section
from llm_launch.launcher.config.choices import choices
from llm_launch.launcher.config.cluster import (  # noqa: F401
    CleanPodPolicy,
    ClusterConfig,
    ClusterKind,
    EksClusterConfig,
    EksJobKind,
    RdzvBackend,
    RestartPolicy,
    SageMakerClusterConfig,
    SageMakerInputMode,
    SlurmClusterConfig,
)
from llm_launch.launcher.config.data_prep import (  # noqa: F401
    DataFilterConfig,
    DataOutputConfig,
    DataPrepConfig,
    DataSourceConfig,
    DataSourceFormat,
    DataSplitConfig,
    DedupConfig,
    DedupGranularity,
)
from llm_launch.launcher.config.instance import AcceleratorKind, InstanceConfig  # noqa: F401
from llm_launch.launcher.config.model import ModelConfig, ModelFamily  # noqa: F401
from llm_launch.launcher.config.neuron import NeuronConfig  # noqa: F401
from llm_launch.launcher.config.parallelism import (  # noqa: F401
    ActivationCheckpointing,
    DataParallel,
    GradientSync,
    ParallelismConfig,
    PipelineSchedule,
)
from llm_launch.launcher.config.plan import MemoryMode, PlanConfig, PriceSource, SuggestRanking  # noqa: F401
from llm_launch.launcher.config.resilience import WatchdogConfig  # noqa: F401
from llm_launch.launcher.config.tracking import MlflowConfig, TrackingBackend, TrackingConfig, WandbConfig, WandbMode  # noqa: F401
from llm_launch.launcher.config.training import (  # noqa: F401
    LORA_TARGETS,
    CheckpointConfig,
    CheckpointMode,
    DataConfig,
    LoraConfig,
    LrSchedule,
    OptimizerConfig,
    OptimizerName,
    Precision,
    PreferenceConfig,
    PreferenceLoss,
    ScheduleConfig,
    TrainerConfig,
    TrainingConfig,
)
from llm_launch.launcher.tasks import TASKS
from omegaconf import MISSING

Action = choices("Action", "auto", "plan", "suggest", "render", "submit", "status", "logs", "stop")


TaskName = choices("TaskName", *TASKS)


JOB_NAME_MAX = 128
"""Longest job name: it becomes a folder name (255 bytes at most on Linux) and the base of remote job names."""


@dataclass
class JobConfig(Section):
    """A whole job: the root of the composed configuration and of job.yaml."""

    job_name: str = MISSING
    """Name of the job; the default output folder and remote job names derive from it."""
    task: TaskName = TaskName.cpt
    """What the job runs (llm_launch.launcher.tasks.TASKS): cpt (continual pre-training, or pre-training from scratch),
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
