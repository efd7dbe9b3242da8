"""MLflow: one run per job, holding the resolved job (params and job.yaml), the plan (plan.json), every
logged metric by step, and metrics.json at the end.

A SageMaker MLflow tracking server is named by its ARN; the sagemaker-mlflow plugin turns it into the
server's URL and signs requests with the job's AWS credentials
(https://docs.aws.amazon.com/sagemaker/latest/dg/mlflow-track-experiments.html).
"""

from __future__ import annotations

import json
import os
from importlib.util import find_spec
from pathlib import Path

from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.config.tracking import mlflow_folder_problem
from llm_launch.train.tracking import job_dict, numbers, reach, redact_uri

EXTRA_HINT = "pip install 'llm-launch[mlflow]'"
RUN_FILE = "mlflow_run.json"
"""Where a job keeps its run id, so that a resumed job continues the same run."""
ARN_PREFIX = "arn:"


def tracking_uri(job: JobConfig) -> str | None:
    return job.tracking.mlflow.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or None


def _server_url(uri: str) -> str:
    """The HTTP(S) address requests for a tracking URI go to (an ARN through the plugin's own resolver)."""
    if uri.startswith(ARN_PREFIX):
        from sagemaker_mlflow.mlflow_sagemaker_helpers import SageMakerMLflowHostMetadataProvider

        provider = SageMakerMLflowHostMetadataProvider()
        provider.set_arn(uri)
        return provider.construct_tracking_server_url()
    return uri


def problem(job: JobConfig) -> str | None:
    if find_spec("mlflow") is None:
        return f"the mlflow client is not installed where the job runs; {EXTRA_HINT}"
    uri = tracking_uri(job)
    if uri is None:
        return ("no tracking server: set tracking.mlflow.tracking_uri (http(s)://host:port, sqlite:///<path>/mlflow.db, "
                "or a SageMaker MLflow tracking server ARN) or MLFLOW_TRACKING_URI")
    folder = mlflow_folder_problem(uri)
    if folder:
        return folder
    if uri.startswith(ARN_PREFIX):
        if find_spec("sagemaker_mlflow") is None:
            return f"a SageMaker MLflow tracking server ARN needs the sagemaker-mlflow plugin; {EXTRA_HINT}"
        try:
            url = _server_url(uri)
        except Exception as exc:  # the plugin's own exception types for a malformed ARN
            return f"{uri} is not a SageMaker MLflow tracking server ARN ({exc})"
    elif uri.startswith(("http://", "https://")):
        url = uri
    else:
        if find_spec("sqlalchemy") is None:  # mlflow-skinny has no database stores
            return f"a database tracking URI ({uri.split(':', 1)[0]}) needs the full mlflow package; pip install mlflow"
        return None  # a database the job writes
    why = reach(url.rstrip("/") + ("/health" if url == uri else "/"))
    if why:
        return f"cannot reach the MLflow tracking server at {redact_uri(url)} ({why}); start it or fix the URI"
    return None


def flat_params(node: object, prefix: str = "") -> dict[str, str]:
    """Leaves of the resolved job as MLflow params (key path -> value text)."""
    if isinstance(node, dict):
        out: dict[str, str] = {}
        for key, value in node.items():
            out.update(flat_params(value, f"{prefix}{key}."))
        return out
    text = json.dumps(node) if isinstance(node, list) else str(node)
    return {prefix.rstrip("."): text[:6000]}


class MlflowTracker:
    def __init__(self, job: JobConfig, plan: dict, out_dir: Path):
        import mlflow

        self.mlflow = mlflow
        mlflow.set_tracking_uri(tracking_uri(job))
        cfg = job.tracking.mlflow
        mlflow.set_experiment(cfg.experiment or job.job_name)
        run_file = out_dir / RUN_FILE
        run_id = json.loads(run_file.read_text())["run_id"] if run_file.is_file() else None
        self.run = mlflow.start_run(run_id=run_id, run_name=None if run_id else (cfg.run_name or job.job_name))
        if run_id is None:
            from llm_launch.launcher.jobfile import write_text_atomic

            write_text_atomic(run_file, json.dumps({"run_id": self.run.info.run_id}) + "\n")
            resolved = job_dict(job)
            mlflow.log_params(flat_params(resolved))
            mlflow.log_dict(resolved, "job.yaml")
            mlflow.log_dict(plan, "plan.json")

    def log(self, record: dict, step: int) -> None:
        self.mlflow.log_metrics(numbers(record), step=step)

    def finish(self, summary: dict | None) -> None:
        if summary is not None:
            self.mlflow.log_dict(summary, "metrics.json")
            self.mlflow.log_metrics({f"final/{k}": v for k, v in numbers(summary).items()})
        self.mlflow.end_run()


def start(job: JobConfig, plan: dict, out_dir: Path) -> MlflowTracker:
    return MlflowTracker(job, plan, out_dir)
