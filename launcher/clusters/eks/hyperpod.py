"""SageMaker HyperPod training operator: a sagemaker.amazonaws.com/v1 HyperPodPyTorchJob.

Fields follow the model of the HyperPod CLI's own package (sagemaker-hyperpod on PyPI,
sagemaker/hyperpod/training/config/hyperpod_pytorch_job_unified_config.py) and the operator's guide
(https://docs.aws.amazon.com/sagemaker/latest/dg/sagemaker-eks-operator-usage.html): replicaSpecs, a string
nprocPerNode, and a runPolicy with job retries, the restart policy and logMonitoringConfiguration. The log rules
watch the trainer's own step line (`step=<n> loss=<x> ...`, printed by rank 0 every training.log_every_n_steps
steps): no such line within hyperpod_start_timeout_s of the start, or none for hyperpod_step_log_timeout_s
afterwards, marks the job as hanging, and the operator restarts it from the last checkpoint. The container runs
`hyperpodrun`, the HyperPod elastic agent (pip install hyperpod-elastic-agent in the image).
"""

from __future__ import annotations

from typing import Any

from llm_launch.launcher.clusters.eks.paths import CONTAINER_JOB_YAML, eks_name
from llm_launch.launcher.clusters.eks.pods import (
    INSTANCE_TYPE_LABEL,
    config_map,
    container_env,
    labels,
    metadata,
    pod_placement,
    resources,
    volumes,
)
from llm_launch.launcher.clusters.eks.rendezvous import HYPERPOD_AGENT_PORT, launcher, rendezvous_flags
from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.render.command import node_script
from llm_launch.launcher.tasks import TASKS
from llm_launch.launcher.topology import topology_of

API_VERSION = "sagemaker.amazonaws.com/v1"
KIND = "HyperPodPyTorchJob"
REPLICA_NAME = "pods"
CONTAINER_NAME = "pytorch"
STEP_LOG_PATTERN = r".*step=\d+ loss=.*"
"""The trainer's step line (train/metrics.py prints `step=<n> loss=<x> lr=...`)."""
RESTART_POLICY = {"numRestartBeforeFullJobRestart": 3, "evalPeriodSeconds": 21600, "maxFullJobRestarts": 1}
"""Process-level restarts before a full job restart, as in the operator guide's example."""


def log_monitoring(job: JobConfig) -> list[dict[str, Any]]:
    """Hang detection on the trainer's step line: late first step, then a gap between steps."""
    eks = job.cluster.eks
    return [
        {"name": "JobStart", "logPattern": STEP_LOG_PATTERN, "expectedStartCutOffInSeconds": eks.hyperpod_start_timeout_s},
        {"name": "JobHangingDetection", "logPattern": STEP_LOG_PATTERN,
         "expectedRecurringFrequencyInSeconds": eks.hyperpod_step_log_timeout_s},
    ]


def pod_template(job: JobConfig) -> dict[str, Any]:
    vols, mounts = volumes(job)
    container = {
        "name": CONTAINER_NAME,
        "image": job.cluster.image,
        "command": ["bash", "-c", node_script(job, CONTAINER_JOB_YAML, rendezvous_flags(job), launcher(job))],
        "env": container_env(job),
        "ports": [{"containerPort": HYPERPOD_AGENT_PORT, "protocol": "TCP"}],
        "resources": resources(job),
        "volumeMounts": mounts,
    }
    spec = pod_placement(job)
    if job.instance.sagemaker_type and INSTANCE_TYPE_LABEL in spec.get("nodeSelector", {}):
        # HyperPod nodes carry the SageMaker name (ml.p5.48xlarge) in the instance-type label
        spec["nodeSelector"][INSTANCE_TYPE_LABEL] = job.instance.sagemaker_type
    return {"metadata": {"labels": labels(job)}, "spec": {**spec, "containers": [container], "volumes": vols}}


def hyperpod_job(job: JobConfig) -> dict[str, Any]:
    """The HyperPodPyTorchJob document."""
    eks = job.cluster.eks
    topo = topology_of(job)
    run_policy: dict[str, Any] = {"jobMaxRetryCount": eks.backoff_limit, "restartPolicy": dict(RESTART_POLICY),
                                  "cleanPodPolicy": str(eks.clean_pod_policy),
                                  "ttlSecondsAfterFinished": eks.ttl_seconds_after_finished}
    if TASKS[job.task].trains_model:  # only training prints step lines (not smoke, eval or prepare)
        run_policy["logMonitoringConfiguration"] = log_monitoring(job)
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata(job, eks_name(job)),
            "spec": {"nprocPerNode": str(topo.ranks_per_node),
                     "replicaSpecs": [{"name": REPLICA_NAME, "replicas": topo.num_nodes, "template": pod_template(job)}],
                     "runPolicy": run_policy}}


def documents(job: JobConfig) -> list[dict[str, Any]]:
    return [config_map(job), hyperpod_job(job)]
