"""From a composed Hydra config to the typed JobConfig, with paths made absolute."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

from llm_launch.launcher.clusters import CLUSTERS
from llm_launch.launcher.compose_errors import problem_from_exception
from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.dialect import resolve_dialect
from llm_launch.launcher.problems import JobProblems, Problem
from llm_launch.launcher.secrets import (
    env_interpolation_message,
    env_interpolations,
    secret_field_message,
    secret_fields,
)
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


def unknown_keys(node: DictConfig, prefix: str = "") -> Iterator[str]:
    """Keys that are not fields of the schema node they sit in (Hydra's +key= can add them)."""
    schema_type = OmegaConf.get_type(node)
    if not dataclasses.is_dataclass(schema_type):
        return
    fields = {f.name for f in dataclasses.fields(schema_type)}
    for key in node.keys():
        path = f"{prefix}{key}"
        if key not in fields:
            yield path
            continue
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_none():
            yield from unknown_keys(child, f"{path}.")


def to_job(cfg: DictConfig, output_dir: Path) -> JobConfig:
    """Resolve and type the config; report every missing required value together."""
    body = OmegaConf.masked_copy(cfg, [k for k in cfg.keys() if k != "hydra"]) if "hydra" in cfg else cfg
    problems = [Problem(key, "is not a field of the job schema; remove it (see llm-launch --cfg job for the fields)")
                for key in unknown_keys(body)]
    problems += [Problem(key, f"is required; set {key}=<value>") for key in sorted(OmegaConf.missing_keys(body))]
    raw = OmegaConf.to_container(body, resolve=False)
    problems += [Problem(key, env_interpolation_message(var)) for key, var in env_interpolations(raw)]
    problems += [Problem(key, secret_field_message(var)) for key, var in secret_fields(raw)]
    if problems:
        raise JobProblems(problems)
    try:
        job: JobConfig = OmegaConf.to_object(body)
    except OmegaConfBaseException as exc:
        raise JobProblems([problem_from_exception(exc)]) from None
    job = resolve_dialect(job)
    job.output_dir = str(output_dir.resolve())
    cluster = CLUSTERS.get(job.cluster.kind)  # an unknown kind is reported by validation
    if cluster:
        cluster.resolve_paths(job)
    return job
