"""Slurm (SageMaker HyperPod, AWS ParallelCluster): an sbatch script run from a login node.

checks.py checks the settings, render.py writes launch.sbatch, runner.py submits it with sbatch
and asks squeue/sacct, the batch log and scancel about it.
"""

from __future__ import annotations

import copy
from pathlib import Path

from llm_launch.launcher.clusters.locations import check_locations
from llm_launch.launcher.clusters.remote import RemoteCluster
from llm_launch.launcher.clusters.slurm import runner as slurm_runner
from llm_launch.launcher.clusters.slurm.checks import check_slurm
from llm_launch.launcher.clusters.slurm.render import render_slurm
from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.plan import Plan
from llm_launch.launcher.problems import Findings


class SlurmCluster(RemoteCluster):
    """cluster=slurm: one batch job; every node reads job.yaml on the shared file system."""

    kind = "slurm"
    runner = slurm_runner
    runs_cpu_nodes = True
    needs_image = False

    def check_settings(self, job: JobConfig, out: Findings) -> None:
        check_slurm(job, out)
        check_locations(job, out, "slurm", job.cluster.slurm.shared_dir, this_machine_only=False)

    def resource_settings(self, job: JobConfig) -> list[tuple[str, str | None]]:
        return [("cluster.slurm.container_image", job.cluster.slurm.container_image)]

    def shared_storage(self, job: JobConfig) -> str | None:
        return job.cluster.slurm.shared_dir

    def container_job(self, job: JobConfig) -> JobConfig:
        """The job as the login node sees it (the file system is shared), checkpoints under output_dir."""
        job = copy.deepcopy(job)
        ckpt = job.training.checkpoint
        ckpt.dir = ckpt.dir or f"{job.output_dir}/checkpoints"
        return job

    def render(self, job: JobConfig, plan: Plan, out_dir: Path, job_yaml: Path) -> list[Path]:
        return render_slurm(job, plan, out_dir, self.container_job_yaml(job, job_yaml))
