"""EKS: the job's manifests (a ConfigMap with job.yaml, then the job of cluster.eks.job_kind) for `kubectl apply -f`.

One module per job kind: pytorchjob.py (Kubeflow training operator v1), trainjob.py (Kubeflow Trainer v2),
hyperpod.py (SageMaker HyperPod training operator). Every kind runs the same node script; how its nodes meet
is in rendezvous.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from llm_launch.launcher.clusters.eks import hyperpod, pytorchjob, trainjob
from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.jobfile import write_text_atomic
from llm_launch.launcher.plan import Plan

KINDS: dict[str, tuple[str, str, Callable[[JobConfig], list[dict[str, Any]]]]] = {
    "pytorchjob": ("pytorchjob.yaml", "pytorchjob", pytorchjob.documents),
    "trainjob": ("trainjob.yaml", "trainjob", trainjob.documents),
    "hyperpod": ("hyperpodpytorchjob.yaml", "hyperpodpytorchjob", hyperpod.documents),
}
"""job_kind -> (manifest file, kubectl resource name, documents)."""
MANIFEST_FILE = KINDS["pytorchjob"][0]


class _Dumper(yaml.SafeDumper):
    """Writes multi-line strings (the container script, job.yaml) as literal blocks."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_representer)


def manifest_file(job: JobConfig) -> str:
    return KINDS[str(job.cluster.eks.job_kind)][0]


def resource_name(job_kind: str) -> str:
    """The kubectl resource of a job kind (kubectl get <it> <name>)."""
    return KINDS[job_kind][1]


def manifests(job: JobConfig) -> list[dict[str, Any]]:
    """Every document, in the order kubectl should create them."""
    return KINDS[str(job.cluster.eks.job_kind)][2](job)


def render_eks(job: JobConfig, plan: Plan, out_dir: Path) -> list[Path]:
    """Write the multi-document manifest."""
    path = out_dir / manifest_file(job)
    text = yaml.dump_all(manifests(job), Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)
    write_text_atomic(path, text)
    return [path]
