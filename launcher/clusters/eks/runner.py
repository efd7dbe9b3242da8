"""EKS: kubectl apply, get, logs and delete of a rendered PyTorchJob."""

from __future__ import annotations

from pathlib import Path

from llm_launch.launcher.clusters.eks.paths import eks_name
from llm_launch.launcher.clusters.eks.render import MANIFEST_FILE
from llm_launch.launcher.clusters.tools import require_tool, run_tool
from llm_launch.launcher.config.schema import JobConfig

KUBECTL_HINT = "install kubectl and point it at the cluster (aws eks update-kubeconfig --name <cluster>)"
JOB_NAME_LABEL = "training.kubeflow.org/job-name"
"""Pod label the training operator sets on every replica's pods."""


def _kubectl() -> str:
    return require_tool("kubectl", KUBECTL_HINT)


def submit(job: JobConfig, out_dir: Path) -> dict:
    manifest = out_dir / MANIFEST_FILE
    output = run_tool([_kubectl(), "apply", "-f", str(manifest)], "kubectl apply")
    print(output.rstrip())
    name = eks_name(job)
    print(f"llm-launch: submitted PyTorchJob {name} in namespace {job.cluster.eks.namespace}")
    return {"name": name, "namespace": job.cluster.eks.namespace, "manifest": str(manifest)}


def status(record: dict, out_dir: Path) -> None:
    print(run_tool([_kubectl(), "get", "pytorchjob", record["name"], "-n", record["namespace"], "-o", "wide"],
                   "kubectl get").rstrip())


def logs(record: dict, out_dir: Path) -> None:
    selector = f"{JOB_NAME_LABEL}={record['name']}"
    print(run_tool([_kubectl(), "logs", "-n", record["namespace"], "-l", selector, "--prefix", "--tail=200",
                    "--max-log-requests=64"], "kubectl logs").rstrip())


def stop(record: dict, out_dir: Path) -> None:
    print(run_tool([_kubectl(), "delete", "-f", record["manifest"], "--ignore-not-found"], "kubectl delete").rstrip())
