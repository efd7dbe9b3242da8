"""Offline validation of rendered TrainJobs and HyperPodPyTorchJobs.

TrainJob: the Trainer v2.3.0 CRD as a strict JSON schema (crd_schema.strict_schema), its metadata.name CEL rules
(RFC 1035, at most 63 characters) written out, and the torch plugin's rule that spec.trainer.env holds none of
the variables it injects (pkg/runtime/framework/plugins/torch/torch.go, TorchRunReservedEnvNames).
HyperPodPyTorchJob: the model of the HyperPod CLI's own package (sagemaker-hyperpod on PyPI), read the way the
CLI reads a job back from the cluster (`_HyperPodPytorchJob.model_validate(spec, by_name=True)` in
sagemaker/hyperpod/training/hyperpod_pytorch_job.py). The module holding the model is loaded by file, since the
package's __init__ pulls in the whole CLI (installed with --no-deps: .ci/run).
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import jsonschema
import pydantic
import yaml
from crd_schema import RFC1035, strict_schema

TRAINJOB_CRD = Path(__file__).parent / "schemas" / "trainer.kubeflow.org_trainjobs.yaml"
TORCH_RESERVED_ENV = {"PET_NNODES", "PET_NPROC_PER_NODE", "PET_NODE_RANK", "PET_MASTER_ADDR", "PET_MASTER_PORT"}
HYPERPOD_MODEL = "sagemaker/hyperpod/training/config/hyperpod_pytorch_job_unified_config.py"


@lru_cache(maxsize=1)
def _trainjob_validator() -> jsonschema.Draft7Validator:
    crd = yaml.load(TRAINJOB_CRD.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1")
    return jsonschema.Draft7Validator(strict_schema(version["schema"]["openAPIV3Schema"]))


def trainjob_errors(doc: dict) -> list[str]:
    """Every problem of one TrainJob document (empty when a cluster would accept it)."""
    errors = [f"schema: {'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in _trainjob_validator().iter_errors(doc)]
    if doc.get("apiVersion") != "trainer.kubeflow.org/v1alpha1" or doc.get("kind") != "TrainJob":
        errors.append("apiVersion/kind is not trainer.kubeflow.org/v1alpha1 TrainJob")
    name = doc.get("metadata", {}).get("name", "")
    if len(name) > 63 or not RFC1035.fullmatch(name):
        errors.append(f"metadata.name {name!r} is not an RFC 1035 label of at most 63 characters (CEL)")
    env = {e["name"] for e in doc.get("spec", {}).get("trainer", {}).get("env", [])}
    if env & TORCH_RESERVED_ENV:
        errors.append(f"trainer.env holds reserved {sorted(env & TORCH_RESERVED_ENV)} (torch plugin)")
    return errors


@lru_cache(maxsize=1)
def hyperpod_model() -> type[pydantic.BaseModel]:
    """_HyperPodPytorchJob from the installed sagemaker-hyperpod package."""
    try:
        path = Path(str(distribution("sagemaker-hyperpod").locate_file(HYPERPOD_MODEL)))
    except PackageNotFoundError:
        raise AssertionError("pip install --no-deps sagemaker-hyperpod==3.12.0 (as .ci/run does)") from None
    spec = importlib.util.spec_from_file_location("hyperpod_pytorch_job_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module._HyperPodPytorchJob


def hyperpod_errors(doc: dict) -> list[str]:
    """Every problem the HyperPod CLI's model finds in one HyperPodPyTorchJob document."""
    errors = []
    if doc.get("apiVersion") != "sagemaker.amazonaws.com/v1" or doc.get("kind") != "HyperPodPyTorchJob":
        errors.append("apiVersion/kind is not sagemaker.amazonaws.com/v1 HyperPodPyTorchJob")
    model = hyperpod_model()
    spec = doc.get("spec", {})
    unknown = set(spec) - set(model.model_fields)
    if unknown:  # the top level of the model ignores extra keys; the nested models forbid them
        errors.append(f"spec: unknown fields {sorted(unknown)}")
    try:
        model.model_validate(spec, by_name=True)
    except pydantic.ValidationError as exc:
        errors += [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
    return errors
