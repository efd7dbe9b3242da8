"""Kubeflow Trainer v2: a trainer.kubeflow.org/v1alpha1 TrainJob on a ClusterTrainingRuntime (torch-distributed).

The runtime (https://github.com/kubeflow/trainer/blob/v2.3.0/manifests/base/runtimes/torch_distributed.yaml) is a
JobSet with one replicated job `node` whose container `node` runs spec.trainer; its torch plugin injects the PET_*
variables (rendezvous.py), so spec.trainer.env must hold none of them. Volumes, mounts, node selection and the
service account are runtimePatches on the `node` job (docs/operator-guides/runtime-patches.md at v2.3.0).
"""

from __future__ import annotations

from typing import Any

from llm_launch.launcher.clusters.eks.paths import CONTAINER_JOB_YAML, eks_name
from llm_launch.launcher.clusters.eks.pods import config_map, container_env, labels, metadata, pod_placement, resources, volumes
from llm_launch.launcher.clusters.eks.rendezvous import launcher, rendezvous_flags
from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.render.command import node_script
from llm_launch.launcher.topology import topology_of

API_VERSION = "trainer.kubeflow.org/v1alpha1"
NODE = "node"
"""The runtime's replicated job and its trainer container."""
PATCH_MANAGER = "llm-launch/launcher"
"""Owner of our runtimePatches entry (any name; Kueue's is kueue.x-k8s.io/manager)."""


def _runtime_patch(job: JobConfig) -> dict[str, Any]:
    vols, mounts = volumes(job)
    pod_spec = {**pod_placement(job), "volumes": vols, "containers": [{"name": NODE, "volumeMounts": mounts}]}
    node_job = {"name": NODE, "template": {"spec": {"template": {"metadata": {"labels": labels(job)},
                                                                 "spec": pod_spec}}}}
    return {"manager": PATCH_MANAGER,
            "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [node_job]}}}}


def trainjob(job: JobConfig) -> dict[str, Any]:
    """The TrainJob document."""
    topo = topology_of(job)
    trainer = {
        "image": job.cluster.image,
        "command": ["bash", "-c", node_script(job, CONTAINER_JOB_YAML, rendezvous_flags(job), launcher(job))],
        "env": container_env(job),
        "numNodes": topo.num_nodes,
        "numProcPerNode": topo.ranks_per_node,
    }
    res = resources(job)
    if res["limits"]:
        trainer["resourcesPerNode"] = res
    return {"apiVersion": API_VERSION, "kind": "TrainJob", "metadata": metadata(job, eks_name(job)),
            "spec": {"runtimeRef": {"apiGroup": "trainer.kubeflow.org", "kind": "ClusterTrainingRuntime",
                                    "name": job.cluster.eks.training_runtime},
                     "trainer": trainer, "runtimePatches": [_runtime_patch(job)]}}


def documents(job: JobConfig) -> list[dict[str, Any]]:
    return [config_map(job), trainjob(job)]
