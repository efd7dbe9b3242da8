"""Offline validation of rendered PyTorchJobs, as the API server and the training operator would check them.

Layers: the CRD's openAPIV3Schema turned into a strict JSON schema (unknown fields rejected where the
CRD lists properties), list-map key uniqueness, the training operator's webhook rules, value sets
the schema lacks, core pod rules, and llm-launch's own consistency rules.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import jsonschema
import yaml

CRD_PATH = Path(__file__).parent / "schemas" / "kubeflow.org_pytorchjobs.yaml"
INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
RFC1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
IANA_SVC = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
NPROC = re.compile(r"auto|cpu|gpu|[1-9][0-9]*")
OPERATOR_ENV = {"MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK"}
GPU_ENV_PREFIXES = ("NCCL_", "TORCH_NCCL_", "CUDA_", "PYTORCH_CUDA_")


def strict_schema(node):
    """The CRD's structural-schema rules, applied recursively
(https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/)."""
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key in ("description", "default", "nullable") or key.startswith("x-kubernetes-"):
            continue
        if key == "properties":
            out[key] = {name: strict_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = strict_schema(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [strict_schema(sub) for sub in value]
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.get("type") == "integer" and node.get("format") in INT_RANGES:
        out["minimum"], out["maximum"] = INT_RANGES[node["format"]]
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if ("properties" in out and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


@lru_cache(maxsize=1)
def crd():
    return yaml.load(CRD_PATH.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


@lru_cache(maxsize=1)
def validator() -> jsonschema.Draft7Validator:
    version = next(v for v in crd()["spec"]["versions"] if v["name"] == "v1")
    return jsonschema.Draft7Validator(strict_schema(version["schema"]["openAPIV3Schema"]))


def _unique(items, key, where, errors):
    seen = set()
    for item in items or []:
        value = key(item)
        if value in seen:
            errors.append(f"{where}: duplicate {value}")
        seen.add(value)


def _pod_errors(role: str, template: dict, errors: list[str]) -> None:
    spec = template["spec"]
    containers = spec.get("containers", [])
    _unique(containers, lambda c: c["name"], f"{role} containers", errors)
    _unique(spec.get("volumes"), lambda v: v["name"], f"{role} volumes", errors)
    if not any(c.get("name") == "pytorch" for c in containers):
        errors.append(f"{role}: no container named pytorch (webhook)")
    volumes = {v["name"] for v in spec.get("volumes", [])}
    for label in template.get("metadata", {}).get("labels", {}).values():
        if len(label) > 63 or not LABEL_VALUE.fullmatch(label):
            errors.append(f"{role}: bad label value {label!r}")
    for c in containers:
        where = f"{role}/{c.get('name')}"
        if not c.get("image"):
            errors.append(f"{where}: no image (webhook)")
        if not DNS1123_LABEL.fullmatch(c.get("name", "")):
            errors.append(f"{where}: container name is not a DNS-1123 label")
        _unique(c.get("env"), lambda e: e["name"], f"{where} env", errors)
        _unique(c.get("volumeMounts"), lambda m: m["mountPath"], f"{where} volumeMounts", errors)
        _unique(c.get("ports"), lambda p: (p["containerPort"], p.get("protocol", "TCP")), f"{where} ports", errors)
        for port in c.get("ports", []):
            name = port.get("name", "")
            if name and (len(name) > 15 or not IANA_SVC.fullmatch(name) or not re.search("[a-z]", name)):
                errors.append(f"{where}: port name {name!r} is not an IANA_SVC_NAME")
        for mount in c.get("volumeMounts", []):
            if mount["name"] not in volumes:
                errors.append(f"{where}: volumeMount {mount['name']} names no volume")
        res = c.get("resources", {})
        limits, requests = res.get("limits", {}), res.get("requests", {})
        for name, value in {**limits, **requests}.items():
            if "/" in name and (name not in limits or requests.get(name, limits[name]) != limits[name]):
                errors.append(f"{where}: extended resource {name} needs a limit equal to its request")
            if "/" in name and not isinstance(value, int):
                errors.append(f"{where}: extended resource {name} must be a whole number")


def pytorchjob_errors(doc: dict) -> list[str]:
    """Every problem of one PyTorchJob document (empty when a cluster would accept it)."""
    errors = [f"schema: {'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator().iter_errors(doc)]
    if doc.get("apiVersion") != "kubeflow.org/v1" or doc.get("kind") != "PyTorchJob":
        errors.append("apiVersion/kind is not kubeflow.org/v1 PyTorchJob")
    name = doc.get("metadata", {}).get("name", "")
    if len(name) > 63 or not RFC1035.fullmatch(name):
        errors.append(f"metadata.name {name!r} is not an RFC 1035 label (webhook)")
    spec = doc.get("spec", {})
    replicas = spec.get("pytorchReplicaSpecs", {})
    for role, rs in replicas.items():
        if role not in ("Master", "Worker"):
            errors.append(f"replica type {role!r} is not Master or Worker (webhook)")
        if role == "Master" and rs.get("replicas") != 1:
            errors.append("Master.replicas must be written as 1 (webhook)")
        if role == "Worker" and rs.get("replicas", 0) < 1:
            errors.append("Worker.replicas must be at least 1 (webhook)")
        if rs.get("restartPolicy") not in ("Always", "OnFailure", "Never", "ExitCode"):
            errors.append(f"{role}.restartPolicy {rs.get('restartPolicy')!r}")
        if "template" in rs:
            _pod_errors(role, rs["template"], errors)
    elastic = spec.get("elasticPolicy")
    if elastic is not None:
        if "Worker" not in replicas:
            errors.append("elasticPolicy needs a Worker role (webhook)")
        if "nProcPerNode" in elastic and "nprocPerNode" in spec:
            errors.append("elasticPolicy.nProcPerNode with spec.nprocPerNode is Forbidden (webhook)")
        if elastic.get("rdzvBackend") not in (None, "c10d", "etcd", "etcd-v2"):
            errors.append(f"rdzvBackend {elastic.get('rdzvBackend')!r}")
        if elastic.get("minReplicas", 0) > elastic.get("maxReplicas", 2**31):
            errors.append("minReplicas > maxReplicas")
    managed = spec.get("runPolicy", {}).get("managedBy")
    if managed not in (None, "kubeflow.org/training-operator", "kueue.x-k8s.io/multikueue"):
        errors.append(f"runPolicy.managedBy {managed!r} (webhook)")
    if spec.get("runPolicy", {}).get("cleanPodPolicy") not in (None, "All", "Running", "None"):
        errors.append("runPolicy.cleanPodPolicy not in All, Running, None")
    if not NPROC.fullmatch(str(spec.get("nprocPerNode", "auto"))) or not isinstance(spec.get("nprocPerNode"), str):
        errors.append(f"nprocPerNode {spec.get('nprocPerNode')!r} is not a string of auto|cpu|gpu|<int>")
    return errors


def launcher_errors(doc: dict, instance, ranks_per_node: int) -> list[str]:
    """llm-launch's own consistency rules between the PyTorchJob and the catalog."""
    errors = []
    spec = doc["spec"]
    if spec.get("nprocPerNode") != str(ranks_per_node):
        errors.append(f"nprocPerNode {spec.get('nprocPerNode')} != catalog {ranks_per_node}")
    if len(doc["metadata"]["name"]) > 50:
        errors.append("name leaves no room for -worker-NN")
    trainium = instance.accelerator.startswith("trainium")
    for role, rs in spec["pytorchReplicaSpecs"].items():
        pod = rs["template"]["spec"]
        if pod.get("nodeSelector", {}).get("node.kubernetes.io/instance-type") != instance.eks_label:
            errors.append(f"{role}: no instance-type nodeSelector")
        container = next(c for c in pod["containers"] if c["name"] == "pytorch")
        limits = container["resources"]["limits"]
        if limits.get(instance.k8s_accelerator_resource) != instance.accelerators_per_node:
            errors.append(f"{role}: accelerator count")
        if instance.efa_interfaces and limits.get("vpc.amazonaws.com/efa") != instance.efa_interfaces:
            errors.append(f"{role}: EFA count")
        shm = [m for m in container["volumeMounts"] if m["mountPath"] == "/dev/shm"]
        shm_volumes = [v for v in pod["volumes"] if shm and v["name"] == shm[0]["name"]]
        if not shm_volumes or shm_volumes[0].get("emptyDir", {}).get("medium") != "Memory":
            errors.append(f"{role}: /dev/shm is not a memory emptyDir")
        names = {e["name"] for e in container["env"]}
        if names & OPERATOR_ENV:
            errors.append(f"{role}: operator-owned env {sorted(names & OPERATOR_ENV)}")
        if trainium and any(n.startswith(GPU_ENV_PREFIXES) for n in names):
            errors.append(f"{role}: GPU env on Trainium")
    return errors
