"""EKS: a Kubeflow PyTorchJob, a Kubeflow Trainer TrainJob or a HyperPodPyTorchJob (with its ConfigMap) for
`kubectl apply -f`.

checks.py checks the settings, paths.py names the job and its container paths, pods.py builds what every kind's
pods hold, rendezvous.py how their nodes meet, pytorchjob.py / trainjob.py / hyperpod.py the job of each kind,
render.py writes the manifest, runner.py applies, inspects and deletes it with kubectl.
"""

from __future__ import annotations

from pathlib import Path

from llm_launch.launcher.clusters.eks import runner as eks_runner
from llm_launch.launcher.clusters.eks.checks import check_eks
from llm_launch.launcher.clusters.eks.paths import CONTAINER_JOB_YAML, container_job, shared_storage
from llm_launch.launcher.clusters.eks.render import render_eks
from llm_launch.launcher.clusters.remote import RemoteCluster
from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.plan import Plan
from llm_launch.launcher.problems import Findings


class EksCluster(RemoteCluster):
    """cluster=eks: a job on a Kubernetes cluster with the Kubeflow or HyperPod training operator."""

    kind = "eks"
    runner = eks_runner
    runs_cpu_nodes = True

    def check_settings(self, job: JobConfig, out: Findings) -> None:
        check_eks(job, out)

    def shared_storage(self, job: JobConfig) -> str | None:
        return shared_storage(job)

    def container_job(self, job: JobConfig) -> JobConfig:
        return container_job(job)

    def container_job_yaml(self, job: JobConfig, job_yaml: Path) -> str:
        return CONTAINER_JOB_YAML

    def render(self, job: JobConfig, plan: Plan, out_dir: Path, job_yaml: Path) -> list[Path]:
        return render_eks(job, plan, out_dir)
