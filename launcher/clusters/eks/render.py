"""EKS: a kubeflow.org/v1 PyTorchJob (plus its ConfigMap, and etcd when chosen) for `kubectl apply -f`.

Topologies (the Kubeflow training operator's v1 PyTorchJob, https://github.com/kubeflow/training-operator):
Master x1 + Worker x(N-1) with a static master (the default), or elastic Worker x N with c10d
(rendezvous on <job>-worker-0) or etcd rendezvous (an etcd Service and Deployment rendered alongside).
The operator injects MASTER_ADDR, RANK, WORLD_SIZE and the PET_* variables torchrun reads, so the
rendered environment holds none of them. nprocPerNode is
always the catalog's integer: "auto" would start one process per vCPU on Trainium.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from llm_launch.launcher.clusters.eks.paths import CONTAINER_JOB_YAML, JOB_DIR, eks_name, shared_storage
from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.devices import is_trainium
from llm_launch.launcher.environment import backend_environment
from llm_launch.launcher.jobfile import job_to_yaml, write_text_atomic
from llm_launch.launcher.plan import Plan
from llm_launch.launcher.render.command import TRAINIUM_PORT, node_script
from llm_launch.launcher.topology import topology_of

MANIFEST_FILE = "pytorchjob.yaml"
JOB_LABEL = "llm-launch/job"
CONTAINER_NAME = "pytorch"
"""The webhook requires a container of this name in every replica."""
PORT_NAME = "pytorchjob-port"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
EFA_RESOURCE = "vpc.amazonaws.com/efa"
ETCD_PORT = 2379
HF_TOKEN_KEY = "token"


class _Dumper(yaml.SafeDumper):
    """Writes multi-line strings (the container script, job.yaml) as literal blocks."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_representer)


def config_map_name(job: JobConfig) -> str:
    return f"{eks_name(job)}-job"


def etcd_name(job: JobConfig) -> str:
    return f"{eks_name(job)}-etcd"


def _labels(job: JobConfig) -> dict[str, str]:
    return {JOB_LABEL: eks_name(job)}


def _metadata(job: JobConfig, name: str) -> dict[str, Any]:
    return {"name": name, "namespace": job.cluster.eks.namespace, "labels": _labels(job)}


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
    backend = backend_environment(job, shared_storage(job))
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in backend.items()]
    secret = job.cluster.eks.hf_token_secret
    if secret:
        env.append({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": secret, "key": HF_TOKEN_KEY}}})
    return env


def pod_template(job: JobConfig) -> dict[str, Any]:
    """The pod of every replica."""
    eks = job.cluster.eks
    shm: dict[str, Any] = {"medium": "Memory"}
    if eks.shm_size:
        shm["sizeLimit"] = eks.shm_size
    volumes: list[dict[str, Any]] = [
        {"name": "shm", "emptyDir": shm},
        {"name": "job", "configMap": {"name": config_map_name(job)}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "shm", "mountPath": "/dev/shm"},
        {"name": "job", "mountPath": JOB_DIR, "readOnly": True},
    ]
    if eks.pvc_name:
        volumes.append({"name": "shared", "persistentVolumeClaim": {"claimName": eks.pvc_name}})
        mounts.append({"name": "shared", "mountPath": eks.mount_path})
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": job.cluster.image,
        "command": ["bash", "-c", node_script(job, CONTAINER_JOB_YAML)],
        "env": container_env(job),
        "resources": resources(job),
        "volumeMounts": mounts,
    }
    if is_trainium(job):
        container["ports"] = [{"name": PORT_NAME, "containerPort": TRAINIUM_PORT, "protocol": "TCP"}]
    spec: dict[str, Any] = {"nodeSelector": {INSTANCE_TYPE_LABEL: job.instance.eks_label}}
    if eks.service_account:
        spec["serviceAccountName"] = eks.service_account
    if eks.tolerations:
        spec["tolerations"] = [dict(t) for t in eks.tolerations]
    spec["containers"] = [container]
    spec["volumes"] = volumes
    return {"metadata": {"labels": _labels(job)}, "spec": spec}


def _replica(job: JobConfig, replicas: int) -> dict[str, Any]:
    return {"replicas": replicas, "restartPolicy": str(job.cluster.eks.restart_policy), "template": pod_template(job)}


def pytorchjob(job: JobConfig) -> dict[str, Any]:
    """The PyTorchJob document."""
    eks = job.cluster.eks
    topo = topology_of(job)
    nodes = topo.num_nodes
    spec: dict[str, Any] = {
        "nprocPerNode": str(topo.ranks_per_node),
        "runPolicy": {"backoffLimit": eks.backoff_limit, "ttlSecondsAfterFinished": eks.ttl_seconds_after_finished,
                      "cleanPodPolicy": str(eks.clean_pod_policy)},
    }
    if eks.elastic:
        elastic: dict[str, Any] = {"rdzvBackend": str(eks.rdzv_backend), "minReplicas": nodes, "maxReplicas": nodes,
                                   "maxRestarts": eks.backoff_limit}
        if eks.rdzv_backend == "etcd":
            elastic.update(rdzvHost=etcd_name(job), rdzvPort=ETCD_PORT)
        spec["elasticPolicy"] = elastic
        spec["pytorchReplicaSpecs"] = {"Worker": _replica(job, nodes)}
    else:
        replicas = {"Master": _replica(job, 1)}
        if nodes > 1:
            replicas["Worker"] = _replica(job, nodes - 1)
        spec["pytorchReplicaSpecs"] = replicas
    return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": _metadata(job, eks_name(job)),
            "spec": spec}


def config_map(job: JobConfig) -> dict[str, Any]:
    """job.yaml for every pod."""
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _metadata(job, config_map_name(job)),
            "data": {"job.yaml": job_to_yaml(job)}}


def etcd_documents(job: JobConfig) -> list[dict[str, Any]]:
    """A one-replica etcd (v2 API enabled, as torch elastic's etcd rendezvous needs) and its Service."""
    name = etcd_name(job)
    selector = {"llm-launch/etcd": name}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": _metadata(job, name),
               "spec": {"selector": selector,
                        "ports": [{"name": "etcd-client", "port": ETCD_PORT, "targetPort": ETCD_PORT,
                                   "protocol": "TCP"}]}}
    command = ["/usr/local/bin/etcd", "--name", "etcd", "--data-dir", "/var/run/etcd/data",
               "--listen-client-urls", f"http://0.0.0.0:{ETCD_PORT}",
               "--advertise-client-urls", f"http://{name}:{ETCD_PORT}", "--enable-v2"]
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _metadata(job, name),
        "spec": {"replicas": 1, "selector": {"matchLabels": selector},
                 "template": {"metadata": {"labels": {**_labels(job), **selector}},
                              "spec": {"containers": [{
                                  "name": "etcd", "image": job.cluster.eks.etcd_image, "command": command,
                                  "ports": [{"name": "etcd-client", "containerPort": ETCD_PORT,
                                             "protocol": "TCP"}]}]}}},
    }
    return [service, deployment]


def manifests(job: JobConfig) -> list[dict[str, Any]]:
    """Every document, in the order kubectl should create them."""
    docs = [config_map(job)]
    if job.cluster.eks.elastic and job.cluster.eks.rdzv_backend == "etcd":
        docs += etcd_documents(job)
    docs.append(pytorchjob(job))
    return docs


def render_eks(job: JobConfig, plan: Plan, out_dir: Path) -> list[Path]:
    """Write pytorchjob.yaml (multi-document)."""
    path = out_dir / MANIFEST_FILE
    text = yaml.dump_all(manifests(job), Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)
    write_text_atomic(path, text)
    return [path]
