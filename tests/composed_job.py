"""Compose a job in-process exactly as the CLI does (Hydra's compose API, then typed)."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from llm_launch.launcher.compose import to_job
from llm_launch.launcher.config import store
from llm_launch.launcher.config.schema import JobConfig


def compose_job(overrides: list[str], output_dir: Path) -> JobConfig:
    """Compose conf/job.yaml with Hydra's compose API and type it as the CLI does."""
    store.register()
    store.register_recipes()
    with initialize_config_dir(str(store.CONF_DIR), version_base="1.3"):
        cfg = compose(store.PRIMARY_CONFIG, overrides=list(overrides))
    return to_job(cfg, output_dir)


def recipe_job(recipe: str, *overrides: str, output_dir: Path = Path("/tmp/llm-launch-test")) -> JobConfig:
    """A shipped recipe with overrides, composed as `llm-launch recipe=...` composes it."""
    return compose_job([f"recipe={recipe}", *overrides], output_dir)
