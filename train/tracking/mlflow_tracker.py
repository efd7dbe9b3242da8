"""MLflow: one run per job, holding the resolved job (params and job.yaml), the plan (plan.json), every
logged metric by step, and metrics.json at the end.

A SageMaker MLflow tracking server is named by its ARN; the sagemaker-mlflow plugin turns it into the
server's URL and signs requests with the job's AWS credentials
(https://docs.aws.amazon.com/sagemaker/latest/dg/mlflow-track-experiments.html).
"""

from __future__ import annotations

import json
from pathlib import Path

from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.tracking_checks import mlflow_tracking_uri
from llm_launch.train.tracking import job_dict, numbers

RUN_FILE = "mlflow_run.json"
"""Where a job keeps its run id, so that a resumed job continues the same run."""


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
        mlflow.set_tracking_uri(mlflow_tracking_uri(job))
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
