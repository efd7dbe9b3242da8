"""What SageMaker, EKS and Slurm share: checks of any remote job, and submission with a record.

The shipped cluster configs use obviously fake example values (account 111122223333, example-bucket,
ExampleSageMakerTrainingRole): rendering works with them, `action=submit` refuses them and names
every key to set. Failures that need the user's action (a missing tool, no credentials, an
unreachable cluster, a rejected request) end with one line and exit code 2.
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import ClassVar, Protocol

from llm_launch.launcher.clusters.base import Cluster
from llm_launch.launcher.clusters.records import append_record, utc_now
from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.plan import Plan
from llm_launch.launcher.problems import Findings

EXAMPLE_MARKERS = ("111122223333", "example-bucket", "ExampleSageMakerTrainingRole")
"""Substrings of the documentation example values shipped in conf/cluster/*.yaml."""


class Runner(Protocol):
    """A kind's runner module: it submits the rendered files and finds the job again from their record."""

    def submit(self, job: JobConfig, out_dir: Path) -> dict:
        """Submit the rendered files in out_dir; what status, logs and stop need to find the job again."""

    def status(self, record: dict, out_dir: Path) -> None: ...

    def logs(self, record: dict, out_dir: Path) -> None: ...

    def stop(self, record: dict, out_dir: Path) -> None: ...


class RemoteCluster(Cluster):
    """A cluster reached from this machine: the job runs elsewhere, on catalog instance types."""

    runner: ClassVar[Runner]
    """The module that talks to the cluster (launcher/clusters/<kind>/runner.py)."""
    runs_cpu_nodes: ClassVar[bool] = False
    """Whether the cluster's nodes may be plain CPU machines (instance=cpu)."""
    needs_image: ClassVar[bool] = True
    """Whether the job runs in cluster.image (Slurm runs on the nodes' own environment unless told otherwise)."""

    def check(self, job: JobConfig, out: Findings) -> None:
        """Instance and image checks every remote job needs, the kind's own checks, the example values on submit."""
        inst = job.instance
        if inst.accelerator == "cpu" and not self.runs_cpu_nodes:
            out.error("instance", f"{inst.name} is a CPU node type, which cluster={self.kind} does not run; pick a "
                      "catalog type such as instance=ml.p5.48xlarge or instance=ml.trn1.32xlarge")
        if job.trainer.num_nodes > 1 and inst.efa_interfaces == 0 and inst.accelerator != "cpu":  # gloo uses TCP
            out.error("trainer.num_nodes", f"{inst.name} has no EFA, so multi-node jobs fail on it; use one node or "
                      "an EFA instance type")
        if self.needs_image and not job.cluster.image:
            out.error("cluster.image", f"{self.kind} jobs need a container image with llm-launch installed; "
                      "set cluster.image=<ECR image URI> (see docker/)")
        self.check_settings(job, out)
        if job.action == "submit":
            self.check_example_values(job, out)

    @abstractmethod
    def check_settings(self, job: JobConfig, out: Findings) -> None:
        """Checks of this kind's own settings."""

    def resource_settings(self, job: JobConfig) -> list[tuple[str, str | None]]:
        """(key, value) of this kind's settings that name a real resource (roles, buckets, images)."""
        return []

    def submitted_values(self, job: JobConfig) -> list[tuple[str, str | None]]:
        """(key, value) of every setting that names a real resource a submission would use."""
        return [("cluster.image", job.cluster.image), *self.resource_settings(job),
                ("neuron.compile_cache_url", job.neuron.compile_cache_url)]

    def check_example_values(self, job: JobConfig, out: Findings) -> None:
        """action=submit must not send the shipped documentation examples."""
        for key, value in self.submitted_values(job):
            if value and any(marker in value for marker in EXAMPLE_MARKERS):
                out.error(key, f"'{value}' is a documentation example, not a real resource; set {key}=<yours> "
                          "before action=submit (action=render works with it)")

    def submit(self, job: JobConfig, plan: Plan, out_dir: Path, job_yaml: Path) -> None:
        """Send the rendered files in out_dir and append the submission to submissions.jsonl."""
        record = self.runner.submit(job, out_dir)
        append_record(out_dir, {"cluster": self.kind, "submitted_at": utc_now().isoformat(timespec="seconds"),
                                **record})

    def status(self, record: dict, out_dir: Path) -> None:
        self.runner.status(record, out_dir)

    def logs(self, record: dict, out_dir: Path) -> None:
        self.runner.logs(record, out_dir)

    def stop(self, record: dict, out_dir: Path) -> None:
        self.runner.stop(record, out_dir)
