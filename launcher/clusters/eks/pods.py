"""What every EKS job kind puts in its pods: names, labels, the node's resources, environment, volumes.

pytorchjob.py, trainjob.py and hyperpod.py wrap these into their own custom resources; render.py writes them.
"""

from __future__ import annotations

from typing import Any

from llm_launch.launcher.clusters.eks.paths import JOB_DIR, eks_name, shared_storage
from llm_launch.launcher.clusters.eks.rendezvous import rendezvous_env
from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.environment import backend_environment
from llm_launch.launcher.jobfile import job_to_yaml

JOB_LABEL = "llm-launch/job"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
EFA_RESOURCE = "vpc.amazonaws.com/efa"
HF_TOKEN_KEY = "token"


def config_map_name(job: JobConfig) -> str:
    return f"{eks_name(job)}-job"


def labels(job: JobConfig) -> dict[str, str]:
    return {JOB_LABEL: eks_name(job)}


def metadata(job: JobConfig, name: str) -> dict[str, Any]:
    return {"name": name, "namespace": job.cluster.eks.namespace, "labels": labels(job)}


def resources(job: JobConfig) -> dict[str, Any]:
    """Extended resources of one node; requests equal limits."""
    inst = job.instance
    wanted: dict[str, int] = {}
    if inst.k8s_accelerator_resource:
        wanted[inst.k8s_accelerator_resource] = inst.accelerators_per_node
    if inst.efa_interfaces:
        wanted[EFA_RESOURCE] = inst.efa_interfaces
    return {"requests": dict(wanted), "limits": dict(wanted)}


def container_env(job: JobConfig) -> list[dict[str, Any]]:
    """The backend environment, and the Hugging Face token only as a reference to a Secret."""
    backend = {**backend_environment(job, shared_storage(job)), **rendezvous_env(job)}
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in backend.items()]
    secret = job.cluster.eks.hf_token_secret
    if secret:
        env.append({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": secret, "key": HF_TOKEN_KEY}}})
    return env


def node_selector(job: JobConfig) -> dict[str, str]:
    """The catalog's instance-type label (none for CPU nodes) and the user's own labels."""
    chosen = {INSTANCE_TYPE_LABEL: job.instance.eks_label} if job.instance.eks_label else {}
    return {**chosen, **job.cluster.eks.node_selector}


def volumes(job: JobConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, volumeMounts): /dev/shm in memory, job.yaml from the ConfigMap, the shared PVC."""
    eks = job.cluster.eks
    shm: dict[str, Any] = {"medium": "Memory"}
    if eks.shm_size:
        shm["sizeLimit"] = eks.shm_size
    vols: list[dict[str, Any]] = [
        {"name": "shm", "emptyDir": shm},
        {"name": "job", "configMap": {"name": config_map_name(job)}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "shm", "mountPath": "/dev/shm"},
        {"name": "job", "mountPath": JOB_DIR, "readOnly": True},
    ]
    if eks.pvc_name:
        vols.append({"name": "shared", "persistentVolumeClaim": {"claimName": eks.pvc_name}})
        mounts.append({"name": "shared", "mountPath": eks.mount_path})
    return vols, mounts


def pod_placement(job: JobConfig) -> dict[str, Any]:
    """nodeSelector, service account and tolerations of the pod spec (those that are set)."""
    eks = job.cluster.eks
    spec: dict[str, Any] = {}
    if selector := node_selector(job):
        spec["nodeSelector"] = selector
    if eks.service_account:
        spec["serviceAccountName"] = eks.service_account
    if eks.tolerations:
        spec["tolerations"] = [dict(t) for t in eks.tolerations]
    return spec


def config_map(job: JobConfig) -> dict[str, Any]:
    """job.yaml for every pod."""
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata(job, config_map_name(job)),
            "data": {"job.yaml": job_to_yaml(job)}}
