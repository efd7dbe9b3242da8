"""Kubeflow training operator v1: a kubeflow.org/v1 PyTorchJob (and an etcd Service and Deployment when chosen).

Topologies (https://github.com/kubeflow/training-operator, branch release-1.9): Master x1 + Worker x(N-1) with a
static master (the default), or elastic Worker x N with c10d (rendezvous on <job>-worker-0) or etcd rendezvous.
Elastic (cluster.eks.elastic, or trainer.min_nodes below num_nodes): elasticPolicy minReplicas = trainer.min_nodes,
maxReplicas = Worker replicas = trainer.num_nodes, maxRestarts = trainer.max_restarts, the fields of ElasticPolicy
in pkg/apis/kubeflow.org/v1/pytorch_types.go, which the operator passes on as PET_NNODES=<min>:<max> and
PET_MAX_RESTARTS (elastic.go); torchrun's own flags say the same (launcher/render/command.py).
The operator owns MASTER_ADDR, RANK and WORLD_SIZE, so the rendered environment holds none of them; the
container's torchrun reads them through explicit flags (rendezvous.py). nprocPerNode is always the catalog's
integer: "auto" would start one process per vCPU on Trainium.
"""

from __future__ import annotations

from typing import Any

from llm_launch.launcher.clusters.eks.paths import CONTAINER_JOB_YAML, eks_name
from llm_launch.launcher.clusters.eks.pods import (
    config_map,
    container_env,
    labels,
    metadata,
    pod_placement,
    resources,
    volumes,
)
from llm_launch.launcher.clusters.eks.rendezvous import ETCD_PORT, elastic_job, etcd_name, launcher, rendezvous_flags
from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.elastic import is_elastic, node_range
from llm_launch.launcher.render.command import node_script, rendezvous_port
from llm_launch.launcher.topology import topology_of

CONTAINER_NAME = "pytorch"
"""The webhook requires a container of this name in every replica."""
PORT_NAME = "pytorchjob-port"
"""The port the operator reads MASTER_PORT (and the elastic endpoint's default port) from."""


def pod_template(job: JobConfig) -> dict[str, Any]:
    """The pod of every replica."""
    vols, mounts = volumes(job)
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": job.cluster.image,
        "command": ["bash", "-c", node_script(job, CONTAINER_JOB_YAML, rendezvous_flags(job), launcher(job))],
        "env": container_env(job),
        "ports": [{"name": PORT_NAME, "containerPort": rendezvous_port(job), "protocol": "TCP"}],
        "resources": resources(job),
        "volumeMounts": mounts,
    }
    spec = {**pod_placement(job), "containers": [container], "volumes": vols}
    return {"metadata": {"labels": labels(job)}, "spec": spec}


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
    if elastic_job(job):
        low, high = node_range(job)
        restarts = job.trainer.max_restarts if is_elastic(job) else eks.backoff_limit
        elastic: dict[str, Any] = {"rdzvBackend": str(eks.rdzv_backend), "minReplicas": low, "maxReplicas": high,
                                   "maxRestarts": restarts, "rdzvPort": rendezvous_port(job)}
        if eks.rdzv_backend == "etcd":
            elastic.update(rdzvHost=etcd_name(job), rdzvPort=ETCD_PORT)
        spec["elasticPolicy"] = elastic
        spec["pytorchReplicaSpecs"] = {"Worker": _replica(job, nodes)}
    else:
        replicas = {"Master": _replica(job, 1)}
        if nodes > 1:
            replicas["Worker"] = _replica(job, nodes - 1)
        spec["pytorchReplicaSpecs"] = replicas
    return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": metadata(job, eks_name(job)),
            "spec": spec}


def etcd_documents(job: JobConfig) -> list[dict[str, Any]]:
    """A one-replica etcd (v2 API enabled, as torch elastic's etcd rendezvous needs) and its Service."""
    name = etcd_name(job)
    selector = {"llm-launch/etcd": name}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": metadata(job, name),
               "spec": {"selector": selector,
                        "ports": [{"name": "etcd-client", "port": ETCD_PORT, "targetPort": ETCD_PORT,
                                   "protocol": "TCP"}]}}
    command = ["/usr/local/bin/etcd", "--name", "etcd", "--data-dir", "/var/run/etcd/data",
               "--listen-client-urls", f"http://0.0.0.0:{ETCD_PORT}",
               "--advertise-client-urls", f"http://{name}:{ETCD_PORT}", "--enable-v2"]
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata(job, name),
        "spec": {"replicas": 1, "selector": {"matchLabels": selector},
                 "template": {"metadata": {"labels": {**labels(job), **selector}},
                              "spec": {"containers": [{
                                  "name": "etcd", "image": job.cluster.eks.etcd_image, "command": command,
                                  "ports": [{"name": "etcd-client", "containerPort": ETCD_PORT,
                                             "protocol": "TCP"}]}]}}},
    }
    return [service, deployment]


def documents(job: JobConfig) -> list[dict[str, Any]]:
    """Every document, in the order kubectl should create them."""
    docs = [config_map(job)]
    if elastic_job(job) and job.cluster.eks.rdzv_backend == "etcd":
        docs += etcd_documents(job)
    docs.append(pytorchjob(job))
    return docs
