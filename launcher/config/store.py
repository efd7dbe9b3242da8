"""Registers the schema with Hydra's ConfigStore and the resolvers the YAML files use."""

from __future__ import annotations

from collections.abc import Iterable

from hydra.core.config_store import ConfigStore
from llm_launch.launcher import PROJECT_ROOT
from llm_launch.launcher.config.schema import JobConfig
from omegaconf import DictConfig, OmegaConf

CONF_DIR = PROJECT_ROOT / "conf"
RECIPES_DIR = PROJECT_ROOT / "recipes"
PRIMARY_CONFIG = "job"


def schema_node() -> DictConfig:
    """The schema as a config node, its free-form mappings (tags, channels, ...) open to new keys.

    Hydra composes in struct mode, which refuses keys a node does not have: without this,
    `cluster.sagemaker.tags={team: ml}` fails and only `+cluster.sagemaker.tags.team=ml` works. A flag set
    on a node wins over the root's (https://omegaconf.readthedocs.io/en/2.3_branch/usage.html#struct-flag).
    """
    node = OmegaConf.structured(JobConfig)
    _open_mappings(node)
    return node


def _open_mappings(node: DictConfig) -> None:
    for key in node.keys():
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_none():
            if OmegaConf.get_type(child) is dict:
                OmegaConf.set_struct(child, False)
            else:
                _open_mappings(child)


def register() -> None:
    """Idempotently register the root schema and the ${project_root:} resolver."""
    ConfigStore.instance().store(name="job_schema", node=schema_node())
    if not OmegaConf.has_resolver("project_root"):
        OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT))


def register_recipes(names: Iterable[str] | None = None) -> None:
    """Expose every recipes/<name>.yaml (or only those named) as option <name> of the `recipe` config group."""
    store = ConfigStore.instance()
    paths = sorted(RECIPES_DIR.glob("*.yaml")) if names is None else [RECIPES_DIR / f"{n}.yaml" for n in names]
    for path in paths:
        if path.is_file():
            store.store(group="recipe", name=path.stem, node=OmegaConf.load(path), package="_global_")


def recipes_named(arguments: list[str]) -> list[str] | None:
    """The recipes a command line composes - the primary config's default and every plain `recipe=a[,b]`
    value - or None (all of them) when it may need more: any argument but a plain override or -m (--help lists
    every option), or a sweep expression. Reading 10 recipes costs a tenth of a plan."""
    defaults = OmegaConf.load(CONF_DIR / f"{PRIMARY_CONFIG}.yaml").get("defaults", [])
    names = [entry["recipe"] for entry in defaults if isinstance(entry, DictConfig) and "recipe" in entry]
    for argument in arguments:
        if argument in ("-m", "--multirun"):
            continue
        key, equals, value = argument.partition("=")
        if argument.startswith("-") or not equals or any(c in value for c in "()[]{}*?$ '\"\\"):
            return None
        if key.lstrip("+~") == "recipe":
            names += value.split(",")
    return names
