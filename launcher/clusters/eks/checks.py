"""Checks of the EKS settings a rendered PyTorchJob relies on, reported with every other problem.

Name rules: https://kubernetes.io/docs/concepts/overview/working-with-objects/names/
Quantities: https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/quantity/
"""

from __future__ import annotations

import re

from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.devices import is_trainium
from llm_launch.launcher.problems import Findings

K8S_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
K8S_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
K8S_QUANTITY = re.compile(r"\d+(\.\d+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?")


def check_eks(job: JobConfig, out: Findings) -> None:
    """Node label, run policy, names, mounts and the shared volume."""
    eks, inst = job.cluster.eks, job.instance
    if inst.accelerator != "cpu" and not inst.eks_label:
        out.error("instance", f"{inst.name} has no EKS node label; pick a catalog instance type")
    for key, value in (("cluster.eks.backoff_limit", eks.backoff_limit),
                       ("cluster.eks.ttl_seconds_after_finished", eks.ttl_seconds_after_finished)):
        if not 0 <= value < 2**31:
            out.error(key, f"must be 0 to 2147483647, got {value}")
    if not K8S_LABEL.fullmatch(eks.namespace):
        out.error("cluster.eks.namespace", f"'{eks.namespace}' is not a Kubernetes namespace name (RFC 1123 label)")
    for key, name in (("cluster.eks.pvc_name", eks.pvc_name), ("cluster.eks.service_account", eks.service_account),
                      ("cluster.eks.hf_token_secret", eks.hf_token_secret)):
        if name is not None and not K8S_SUBDOMAIN.fullmatch(name):
            out.error(key, f"'{name}' is not a Kubernetes object name (lower-case letters, digits, '-', '.')")
    if not eks.mount_path.startswith("/"):
        out.error("cluster.eks.mount_path", f"'{eks.mount_path}' must be an absolute path")
    if eks.shm_size is not None and not K8S_QUANTITY.fullmatch(eks.shm_size):
        out.error("cluster.eks.shm_size", f"'{eks.shm_size}' is not a Kubernetes quantity such as 64Gi")
    if not eks.pvc_name:
        out.warn("cluster.eks.pvc_name", "no shared volume: outputs and checkpoints stay in the pods and are lost "
                 "when they end; set cluster.eks.pvc_name=<FSx claim>")
    if eks.elastic and is_trainium(job):
        out.warn("cluster.eks.elastic", "Neuron graphs are compiled for a fixed world size; the job keeps min = max "
                 "nodes, so elastic only changes how ranks meet")
