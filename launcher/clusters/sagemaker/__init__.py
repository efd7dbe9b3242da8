"""SageMaker training jobs: a CreateTrainingJob request, submitted with boto3.

checks.py checks the settings, paths.py holds the container paths, render.py writes the request,
request_model.py checks it against botocore's service model, runner.py submits and manages the job.
The container side is llm_launch.launcher.container.sagemaker_entry.
"""

from __future__ import annotations

from pathlib import Path

from llm_launch.launcher.clusters.remote import RemoteCluster
from llm_launch.launcher.clusters.sagemaker import runner as sagemaker_runner
from llm_launch.launcher.clusters.sagemaker.checks import check_sagemaker
from llm_launch.launcher.clusters.sagemaker.paths import CONTAINER_JOB_YAML, container_job, used_channels
from llm_launch.launcher.clusters.sagemaker.render import render_sagemaker
from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.plan import Plan
from llm_launch.launcher.problems import Findings


class SageMakerCluster(RemoteCluster):
    """cluster=sagemaker: one SageMaker training job per submission."""

    kind = "sagemaker"
    runner = sagemaker_runner

    def check_settings(self, job: JobConfig, out: Findings) -> None:
        check_sagemaker(job, out)

    def resource_settings(self, job: JobConfig) -> list[tuple[str, str | None]]:
        sm = job.cluster.sagemaker
        return [("cluster.sagemaker.role_arn", sm.role_arn), ("cluster.sagemaker.s3_output_uri", sm.s3_output_uri),
                ("cluster.sagemaker.s3_checkpoint_uri", sm.s3_checkpoint_uri),
                ("cluster.sagemaker.s3_code_uri", sm.s3_code_uri),
                *((f"cluster.sagemaker.channels.{name}", sm.channels.get(name)) for name in used_channels(job))]

    def shared_storage(self, job: JobConfig) -> str | None:
        return job.cluster.sagemaker.s3_output_uri

    def container_job(self, job: JobConfig) -> JobConfig:
        return container_job(job)

    def container_job_yaml(self, job: JobConfig, job_yaml: Path) -> str:
        return CONTAINER_JOB_YAML

    def render(self, job: JobConfig, plan: Plan, out_dir: Path, job_yaml: Path) -> list[Path]:
        return render_sagemaker(job, plan, out_dir, self.container_job_yaml(job, job_yaml))
