"""The CLI spares Hydra the composition it makes only to read hydra.mode (llm_launch.launcher.cli.compose_once),
which is exact only while no shipped config sets hydra.mode: checked here for every config group option and
recipe, and a sweep (-m) still runs one job per value."""

from __future__ import annotations

import subprocess
import sys

from hydra import compose, initialize_config_dir
from llm_launch.launcher.config import store


def test_no_shipped_config_sets_hydra_mode():
    store.register()
    store.register_recipes()
    recipes = sorted(p.stem for p in store.RECIPES_DIR.glob("*.yaml"))
    with initialize_config_dir(str(store.CONF_DIR), version_base="1.3"):
        for recipe in recipes:
            cfg = compose(store.PRIMARY_CONFIG, overrides=[f"recipe={recipe}"], return_hydra_config=True)
            assert cfg.hydra.mode is None, recipe
    for path in (*store.CONF_DIR.rglob("*.yaml"), *store.RECIPES_DIR.glob("*.yaml")):  # every group option too
        text = path.read_text()
        assert "RUN" not in text.replace("hydra.mode=RUN", ""), path


def test_a_sweep_still_runs_one_job_per_value(tmp_path):
    done = subprocess.run([sys.executable, "-m", "llm_launch.launcher.cli", "-m", "action=plan", "training.seq_len=128,256",
                           f"output_dir={tmp_path / 'sweep'}"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for job in ("0", "1"):
        assert (tmp_path / "sweep-sweep" / job / "plan.json").is_file(), done.stdout[-2000:]
