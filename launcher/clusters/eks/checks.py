"""Checks of the EKS settings a rendered PyTorchJob relies on, reported with every other problem.

Name rules: https://kubernetes.io/docs/concepts/overview/working-with-objects/names/
Labels: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#syntax-and-character-set
Quantities: https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/quantity/
"""

from __future__ import annotations

import re

from llm_launch.launcher.clusters.eks.paths import shared_storage
from llm_launch.launcher.clusters.locations import check_locations
from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.devices import is_trainium
from llm_launch.launcher.elastic import is_elastic
from llm_launch.launcher.problems import Findings

K8S_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
K8S_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
K8S_LABEL_KEY = re.compile(r"([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
K8S_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
K8S_QUANTITY = re.compile(r"\d+(\.\d+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?")


def check_eks(job: JobConfig, out: Findings) -> None:
    """Node label, run policy, names, mounts, the shared volume, the job kind and where inputs are read."""
    eks, inst = job.cluster.eks, job.instance
    if inst.accelerator != "cpu" and not inst.eks_label:
        out.error("instance", f"{inst.name} has no EKS node label; pick a catalog instance type")
    if inst.accelerator == "cpu" and not eks.node_selector:
        out.warn("cluster.eks.node_selector", f"{inst.name} pods may land on any node; set "
                 "cluster.eks.node_selector={eks.amazonaws.com/nodegroup: <your CPU node group>}")
    for key, value in eks.node_selector.items():
        if not K8S_LABEL_KEY.fullmatch(str(key)) or not K8S_LABEL_VALUE.fullmatch(str(value)):
            out.error("cluster.eks.node_selector", f"'{key}: {value}' is not a Kubernetes label (key: [prefix/]name, "
                      "value: at most 63 letters, digits, '-', '_', '.')")
    if eks.job_kind != "pytorchjob" and eks.elastic:
        how = "its torch plugin has no elastic policy" if eks.job_kind == "trainjob" else \
            "its nodes meet through the operator (hyperpodrun)"
        out.error("cluster.eks.elastic", f"applies to job_kind=pytorchjob only ({eks.job_kind}: {how}); "
                  "set cluster.eks.elastic=false")
    if eks.job_kind != "pytorchjob" and is_elastic(job):
        how = ("its torch plugin renders no elastic policy (--nnodes=min:max)" if eks.job_kind == "trainjob" else
               "the sagemaker-hyperpod model its rendering is validated against (3.12.0) has no elastic policy; "
               "HyperPod documents elastic training for its operator 1.2+ "
               "(https://docs.aws.amazon.com/sagemaker/latest/dg/sagemaker-eks-elastic-training.html)")
        out.error("trainer.min_nodes", f"an elastic node count is rendered for cluster.eks.job_kind=pytorchjob only "
                  f"({eks.job_kind}: {how}); set cluster.eks.job_kind=pytorchjob or trainer.min_nodes=null")
    if eks.job_kind == "hyperpod":
        out.warn("cluster.eks.job_kind", f"hyperpod pods start hyperpodrun (hyperpod-elastic-agent, newest 1.1.3), which "
                 f"needs torch < 2.12 in {job.cluster.image}: the agent pins it, and under torch 2.13 hyperpodrun exits "
                 "at start (argparse: torchrun's own --shutdown-timeout clashes with the agent's); build the image "
                 "with torch 2.9 to 2.11")
    if eks.job_kind == "trainjob" and not K8S_SUBDOMAIN.fullmatch(eks.training_runtime):
        out.error("cluster.eks.training_runtime", f"'{eks.training_runtime}' is not a Kubernetes object name")
    check_locations(job, out, "eks", shared_storage(job), this_machine_only=True)
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
    if eks.elastic and is_trainium(job) and not is_elastic(job):
        out.warn("cluster.eks.elastic", "Neuron graphs are compiled for a fixed world size; the job keeps min = max "
                 "nodes, so elastic only changes how ranks meet")
