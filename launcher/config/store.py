"""Registers the schema with Hydra's ConfigStore and the resolvers the YAML files use."""

from __future__ import annotations

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from launcher import PROJECT_ROOT
from launcher.config.schema import JobConfig

CONF_DIR = PROJECT_ROOT / "conf"
RECIPES_DIR = PROJECT_ROOT / "recipes"
PRIMARY_CONFIG = "job"


def register() -> None:
    """Idempotently register the root schema and the ${project_root:} resolver."""
    ConfigStore.instance().store(name="job_schema", node=JobConfig)
    if not OmegaConf.has_resolver("project_root"):
        OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT))


def register_recipes() -> None:
    """Expose every recipes/<name>.yaml as option <name> of the `recipe` config group."""
    store = ConfigStore.instance()
    for path in sorted(RECIPES_DIR.glob("*.yaml")):
        store.store(group="recipe", name=path.stem, node=OmegaConf.load(path), package="_global_")
