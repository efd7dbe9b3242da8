"""Compose recipes the way llm-launch does, for the Neuron backend's tests."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir

from launcher.compose import to_job
from launcher.config import store
from launcher.config.schema import JobConfig


def recipe_job(recipe: str, *overrides: str, output_dir: Path = Path("/tmp/llm-launch-test")) -> JobConfig:
    store.register()
    store.register_recipes()
    with initialize_config_dir(str(store.CONF_DIR), version_base="1.3"):
        cfg = compose(store.PRIMARY_CONFIG, overrides=[f"recipe={recipe}", *overrides])
    return to_job(cfg, output_dir)
