"""What every cluster kind provides: its checks, container paths, render, submit, status, logs and stop.

One subclass per kind (launcher/clusters/<kind>/), registered in llm_launch.launcher.clusters.CLUSTERS. The CLI
and the validation call these hooks and never branch on cluster.kind themselves.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import ClassVar

from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.plan import Plan
from llm_launch.launcher.problems import Findings


class RunnerError(Exception):
    """A submission or management step failed in a way the user must fix; the message is one line (exit 2)."""


class RunFailed(Exception):
    """The job ran and ended without completing; the message is one line (exit 1, or exit_code)."""

    exit_code: int = 1


class Cluster(ABC):
    """One place jobs run."""

    kind: ClassVar[str]
    """Value of cluster.kind."""
    runs_here: ClassVar[bool] = False
    """Whether the job runs on this machine, so its paths and installed packages can be checked at plan time."""
    default_action: ClassVar[str] = "render"
    """What action=auto does: submit, or only render the files for the user to submit."""

    def resolve_paths(self, job: JobConfig) -> None:
        """Make the composed job's paths the ones this cluster reads (in place, at composition).

        By default they stay as written: the cluster reads them where the job runs."""
        return None

    @abstractmethod
    def check(self, job: JobConfig, out: Findings) -> None:
        """Add every problem of the cluster settings, and of the job on this cluster, to out."""

    def shared_storage(self, job: JobConfig) -> str | None:
        """Storage every node of the job shares and that outlives it (a file system, or an s3:// prefix), if any:
        the default home of the Neuron compile cache."""
        return None

    def container_job(self, job: JobConfig) -> JobConfig:
        """The job with the output and checkpoint folders its processes see (written as job.yaml)."""
        return job

    def container_job_yaml(self, job: JobConfig, job_yaml: Path) -> str:
        """Path of job.yaml where the job's processes read it."""
        return str(job_yaml)

    def hold_output_dir(self, out_dir: Path) -> AbstractContextManager:
        """Held from before the command writes anything into out_dir until it ends (RunnerError when another run
        holds it). By default nothing is held: the job runs elsewhere."""
        return nullcontext()

    @abstractmethod
    def render(self, job: JobConfig, plan: Plan, out_dir: Path, job_yaml: Path) -> list[Path]:
        """Write the cluster's files next to job.yaml; the paths written."""

    @abstractmethod
    def submit(self, job: JobConfig, plan: Plan, out_dir: Path, job_yaml: Path) -> None:
        """Hand the rendered job to the cluster (RunnerError or RunFailed when that fails)."""

    def status(self, record: dict, out_dir: Path) -> None:
        """Print where a submitted job stands."""
        raise RunnerError(f"cluster.kind={self.kind} keeps no submitted jobs to ask about")

    def logs(self, record: dict, out_dir: Path) -> None:
        """Print a submitted job's logs."""
        raise RunnerError(f"cluster.kind={self.kind} keeps no submitted jobs to show logs of")

    def stop(self, record: dict, out_dir: Path) -> None:
        """Stop a submitted job."""
        raise RunnerError(f"cluster.kind={self.kind} keeps no submitted jobs to stop")
