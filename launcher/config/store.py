"""Registers the schema with Hydra's ConfigStore and the resolvers the YAML files use."""

from __future__ import annotations

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


def register_recipes() -> None:
    """Expose every recipes/<name>.yaml as option <name> of the `recipe` config group."""
    store = ConfigStore.instance()
    for path in sorted(RECIPES_DIR.glob("*.yaml")):
        store.store(group="recipe", name=path.stem, node=OmegaConf.load(path), package="_global_")
