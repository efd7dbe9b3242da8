"""From a composed Hydra config to the typed JobConfig, with paths made absolute."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

from llm_launch.launcher.clusters import CLUSTERS
from llm_launch.launcher.compose_errors import problem_from_exception
from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.dialect import resolve_dialect
from llm_launch.launcher.pretrained_config import (
    CHECKED_FIELDS,
    CONFIG_JSON,
    PretrainedConfigError,
    channel_config,
    fill_and_check,
    name_of_folder,
    read_local_config,
)
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


def _config_here(body: DictConfig, path: str, leaves: list[str]) -> tuple[dict | None, str]:
    """(config.json, where) of the pretrained folder where this machine can read it: a local folder, or (for a model
    group that leaves fields to it) a SageMaker channel's S3 prefix; (None, why) otherwise."""
    config = read_local_config(path) if "://" not in path else None
    if config is not None:
        return config, f"{path.rstrip('/')}/{CONFIG_JSON}"
    cluster = body.get("cluster")
    if leaves and cluster is not None and str(cluster.get("kind")) == "sagemaker":
        return channel_config(path, dict(cluster.sagemaker.channels or {}), str(cluster.get("region") or ""))
    return None, f"{path} has no {CONFIG_JSON} this machine can read"


def _hydra(cfg: DictConfig, key: str, default):
    """A value of the Hydra run's own config: cfg's hydra node, else the running Hydra app's."""
    if "hydra" in cfg:
        return OmegaConf.select(cfg, f"hydra.{key}", default=default)
    from hydra.core.hydra_config import HydraConfig

    return OmegaConf.select(HydraConfig.get(), key, default=default) if HydraConfig.initialized() else default


def _overridden(cfg: DictConfig) -> set[str]:
    """model.* fields set on the command line (Hydra's task overrides)."""
    overrides = _hydra(cfg, "overrides.task", None) or []
    return {str(o).lstrip("+~").split("=", 1)[0].removeprefix("model.") for o in overrides
            if str(o).lstrip("+~").startswith("model.")}


def fill_from_pretrained(body: DictConfig, group: str = "", overridden: frozenset[str] = frozenset()) \
        -> tuple[list[Problem], set[str]]:
    """Fill the model fields the recipe leaves to model.pretrained_path's config.json and refuse the ones that
    contradict it (llm_launch.launcher.pretrained_config). Returns the problems and the model keys left missing
    because the file could not be read here (reported once, on model.pretrained_path)."""
    model = body.get("model")
    try:
        path = model.get("pretrained_path") if isinstance(model, DictConfig) else None
    except OmegaConfBaseException:
        return [], set()  # an interpolation that does not resolve is reported when the job is typed
    if not path:
        return [], set()
    take_all = bool(model.get("from_pretrained"))

    def left(node: DictConfig, field: str) -> bool:
        return OmegaConf.is_missing(node, field) or (take_all and field not in overridden)

    leaves = [f for f in CHECKED_FIELDS if left(model, f)]
    try:
        config, where = _config_here(body, str(path), leaves)
    except PretrainedConfigError as exc:
        return [Problem("model.pretrained_path", str(exc))], {f"model.{f}" for f in leaves}
    if config is None:
        if not leaves:
            return [], set()  # checked by validation (SageMaker channels) and by the job when it starts
        return [Problem("model.pretrained_path", f"{where}, and the model group leaves {', '.join(leaves)} to it; "
                        "point it at a readable Hugging Face folder (SageMaker: a channel whose S3 prefix this "
                        "machine's credentials can read) or name the model's group, e.g. model=llama3_1_8b")], \
            {f"model.{f}" for f in leaves}
    try:
        found = fill_and_check(model, config, where, is_missing=left, group=group, overridden=overridden)
    except PretrainedConfigError as exc:
        return [Problem("model.pretrained_path", str(exc))], {f"model.{f}" for f in leaves}
    if OmegaConf.is_missing(model, "name"):
        model.name = name_of_folder(str(path))
    if left(model, "source"):
        model.source = where
    return [Problem(key, message) for key, message in found], set()


def to_job(cfg: DictConfig, output_dir: Path) -> JobConfig:
    """Resolve and type the config; report every missing required value together."""
    body = OmegaConf.masked_copy(cfg, [k for k in cfg.keys() if k != "hydra"]) if "hydra" in cfg else cfg
    problems = [Problem(key, "is not a field of the job schema; remove it (see llm-launch --cfg job for the fields)")
                for key in unknown_keys(body)]
    group = _hydra(cfg, "runtime.choices.model", "")
    found, unread = fill_from_pretrained(body, str(group or ""), frozenset(_overridden(cfg)))
    problems += found
    problems += [Problem(key, f"is required; set {key}=<value>") for key in sorted(OmegaConf.missing_keys(body))
                 if key not in unread and not (unread and key == "model.name")]
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
