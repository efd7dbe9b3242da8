"""Shared helpers for launcher tests: compose a job in-process, or run the real CLI."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from launcher import PROJECT_ROOT
from launcher.compose import to_job
from launcher.config import store
from launcher.config.schema import JobConfig


def compose_job(overrides: list[str], output_dir: Path) -> JobConfig:
    """Compose conf/job.yaml with Hydra's compose API and type it as the CLI does."""
    store.register()
    store.register_recipes()
    with initialize_config_dir(str(store.CONF_DIR), version_base="1.3"):
        cfg = compose(store.PRIMARY_CONFIG, overrides=list(overrides))
    return to_job(cfg, output_dir)


def run_cli(args: list[str], output_dir: Path, cwd: Path = PROJECT_ROOT) -> subprocess.CompletedProcess:
    """Run `llm-launch action=plan output_dir=<output_dir> *args` in a fresh interpreter."""
    cmd = [sys.executable, "-m", "launcher.cli", "action=plan", f"output_dir={output_dir}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=120)


@pytest.fixture
def job_for(tmp_path: Path) -> Callable[..., JobConfig]:
    """job_for(*overrides) -> the typed JobConfig, output under tmp_path."""

    def _job(*overrides: str) -> JobConfig:
        return compose_job(list(overrides), tmp_path / "out")

    return _job


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    """cli(*overrides) -> the finished `llm-launch action=plan` process, output under tmp_path."""

    def _run(*overrides: str) -> subprocess.CompletedProcess:
        return run_cli(list(overrides), tmp_path / "out")

    return _run


@pytest.fixture
def cli_suggest(tmp_path: Path) -> Callable[..., tuple[subprocess.CompletedProcess, Path]]:
    """cli_suggest(*overrides) -> (the finished `llm-launch action=suggest` process, its output folder)."""

    def _run(*overrides: str) -> tuple[subprocess.CompletedProcess, Path]:
        out = tmp_path / "suggest"
        cmd = [sys.executable, "-m", "launcher.cli", "action=suggest", f"output_dir={out}", *overrides]
        return subprocess.run(cmd, capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120), out

    return _run
