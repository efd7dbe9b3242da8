"""EKS: kubectl apply, get, logs and delete of a rendered PyTorchJob, TrainJob or HyperPodPyTorchJob."""

from __future__ import annotations

from pathlib import Path

from llm_launch.launcher.clusters.eks.paths import eks_name
from llm_launch.launcher.clusters.eks.render import manifest_file, resource_name
from llm_launch.launcher.clusters.tools import require_tool, run_tool
from llm_launch.launcher.config.schema import JobConfig

KUBECTL_HINT = "install kubectl and point it at the cluster (aws eks update-kubeconfig --name <cluster>)"
JOB_LABEL = "llm-launch/job"
"""Pod label every rendered job kind puts on its pods (pods.py)."""


def _kubectl() -> str:
    return require_tool("kubectl", KUBECTL_HINT)


def submit(job: JobConfig, out_dir: Path) -> dict:
    manifest = out_dir / manifest_file(job)
    output = run_tool([_kubectl(), "apply", "-f", str(manifest)], "kubectl apply")
    print(output.rstrip())
    name = eks_name(job)
    kind = str(job.cluster.eks.job_kind)
    print(f"llm-launch: submitted {resource_name(kind)} {name} in namespace {job.cluster.eks.namespace}")
    return {"name": name, "namespace": job.cluster.eks.namespace, "manifest": str(manifest), "job_kind": kind}


def status(record: dict, out_dir: Path) -> None:
    resource = resource_name(record.get("job_kind", "pytorchjob"))
    print(run_tool([_kubectl(), "get", resource, record["name"], "-n", record["namespace"], "-o", "wide"],
                   "kubectl get").rstrip())


def logs(record: dict, out_dir: Path) -> None:
    selector = f"{JOB_LABEL}={record['name']}"
    print(run_tool([_kubectl(), "logs", "-n", record["namespace"], "-l", selector, "--prefix", "--tail=200",
                    "--max-log-requests=64"], "kubectl logs").rstrip())


def stop(record: dict, out_dir: Path) -> None:
    print(run_tool([_kubectl(), "delete", "-f", record["manifest"], "--ignore-not-found"], "kubectl delete").rstrip())
