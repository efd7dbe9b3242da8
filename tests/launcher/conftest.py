"""Shared helpers for launcher tests: compose a job in-process, or run the real CLI."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from composed_job import compose_job

from launcher import PROJECT_ROOT
from launcher.config.schema import JobConfig


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
