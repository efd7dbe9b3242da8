"""The tracking section: TensorBoard, MLflow and W&B."""

from __future__ import annotations

from dataclasses import dataclass, field

from llm_launch.launcher.config.checks import Checks, Section
from llm_launch.launcher.config.choices import choices

TrackingBackend = choices("TrackingBackend", "tensorboard", "mlflow", "wandb")
"""Where a run's metrics go besides metrics.jsonl (train/tracking)."""


WandbMode = choices("WandbMode", "online", "offline")
"""wandb.init's mode: online sends to the W&B server, offline writes the run under output_dir/wandb."""


MLFLOW_URI_SCHEMES = ("arn:", "databricks", "sqlite:", "postgresql", "mysql", "mssql", "uc:")
"""Tracking URIs without "://" that are not folders: SageMaker ARNs and the profile-style URIs MLflow accepts."""


def mlflow_folder_problem(uri: str | None) -> str | None:
    """What is wrong with an MLflow tracking URI that names a folder (file store), or None.

    MLflow 3's FileStore raises "The filesystem tracking backend ... is in maintenance mode" when the first run
    is created (mlflow/store/tracking/file_store.py, FileStore.__init__), i.e. minutes into a job;
    https://mlflow.org/docs/latest/self-hosting/migrate-from-file-store names the database stores instead.
    """
    if not uri or not (uri.startswith("file:") or "://" not in uri and not uri.startswith(MLFLOW_URI_SCHEMES)):
        return None
    return (f"{uri!r} is a folder (MLflow file store), which MLflow 3 refuses when the run starts; use a database, "
            "e.g. tracking.mlflow.tracking_uri=sqlite:///<shared folder>/mlflow.db, or a tracking server (http://host:5000)")


@dataclass
class MlflowConfig(Section):
    """An MLflow tracking server (pip install 'llm-launch[mlflow]')."""

    tracking_uri: str | None = None
    """http(s)://host:port of a tracking server, a database (sqlite:///path/mlflow.db, postgresql://...), or the ARN
    of a SageMaker MLflow tracking server (arn:aws:sagemaker:<region>:<account>:mlflow-tracking-server/<name>, through the
    sagemaker-mlflow plugin and the job's AWS credentials); None reads MLFLOW_TRACKING_URI where the job runs."""
    experiment: str | None = None
    """Experiment the run is recorded in; None uses job_name."""
    run_name: str | None = None
    """Name of the run; None uses job_name. A resumed job continues the same run (output_dir/mlflow_run.json)."""

    def own_problems(self, checks: Checks) -> None:
        why = mlflow_folder_problem(self.tracking_uri)
        if why:
            checks.error("tracking_uri", why)


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
