"""Fixtures shared by every test folder: run llm-launch end to end and read what a run recorded."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from composed_job import compose_job
from llm_launch.launcher import PROJECT_ROOT
from llm_launch.launcher.config.schema import JobConfig
from slurm_cluster import SlurmCluster, ensure_installed

SYSTEM_FIXTURES = frozenset({"slurm_cluster", "launch", "command", "moto_server", "mlflow_server"})
"""Fixtures that start daemons (Slurm, moto_server, mlflow server) or multi-process training through the CLI:
every test using one, directly or through another fixture, is in the system tier (python -m pytest -m system)."""


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if SYSTEM_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.system)


QUIET_RUN = ["training.log_every_n_steps=1", "training.eval_every_n_steps=0"]
"""Every step logged, validation only at the end."""


def cli_command(out_dir: Path, *overrides: str) -> list[str]:
    """The `llm-launch output_dir=<out_dir> <overrides>` command line (trains locally by default)."""
    return [sys.executable, "-m", "llm_launch.launcher.cli", f"output_dir={out_dir}", *QUIET_RUN, *overrides]


def launch_job(out_dir: Path, *overrides: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run cli_command in a fresh interpreter and return the finished process."""
    return subprocess.run(cli_command(out_dir, *overrides), capture_output=True, text=True, timeout=timeout)


def step_records(out_dir: Path) -> dict[int, dict]:
    """Training records of metrics.jsonl by step."""
    records = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r for r in records if "loss" in r}


@pytest.fixture(scope="session")
def command() -> Callable[..., list[str]]:
    """command(out_dir, *overrides): the llm-launch command line, to start with Popen."""
    return cli_command


@pytest.fixture(scope="session")
def launch() -> Callable[..., subprocess.CompletedProcess]:
    """launch(out_dir, *overrides): run a job through the CLI and return the finished process."""
    return launch_job


@pytest.fixture(scope="session")
def records() -> Callable[[Path], dict[int, dict]]:
    """records(out_dir): metrics.jsonl training records keyed by step."""
    return step_records


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., SlurmCluster]]:
    """slurm_cluster(node=<this host>, **script options): a running real single-node Slurm, one per
    distinct arguments, shared by the session and stopped at its end (tests/slurm_cluster.py)."""
    clusters: dict[tuple, SlurmCluster] = {}

    def _cluster(node: str = socket.gethostname().split(".")[0], **options: object) -> SlurmCluster:
        key = (node, *sorted(options.items()))
        if key not in clusters:
            ensure_installed()
            cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"), node, options)
            clusters[key] = cluster
            cluster.start()
        return clusters[key]

    yield _cluster
    for cluster in clusters.values():
        cluster.stop()


def run_cli(args: list[str], output_dir: Path, cwd: Path = PROJECT_ROOT) -> subprocess.CompletedProcess:
    """Run `llm-launch action=plan output_dir=<output_dir> *args` in a fresh interpreter."""
    cmd = [sys.executable, "-m", "llm_launch.launcher.cli", "action=plan", f"output_dir={output_dir}", *args]
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
        cmd = [sys.executable, "-m", "llm_launch.launcher.cli", "action=suggest", f"output_dir={out}", *overrides]
        return subprocess.run(cmd, capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120), out

    return _run


@pytest.fixture(scope="session")
def moto_server():
    """One moto_server (with its front, tests/moto_endpoint.py) for the whole session."""
    from moto_endpoint import MotoEndpoint

    endpoint = MotoEndpoint()
    yield endpoint
    endpoint.close()


@pytest.fixture
def aws(moto_server, monkeypatch):
    """The moto endpoint, emptied, with this test's environment pointing every AWS client at it."""
    moto_server.reset()
    for key, value in moto_server.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return moto_server


@pytest.fixture(scope="session")
def sample_inputs(tmp_path_factory):
    """The shipped sample written as users write data: save_to_disk folders, Parquet, JSONL (tests/sample_inputs.py)."""
    from sample_inputs import write_inputs

    return write_inputs(tmp_path_factory.mktemp("sample-inputs"))
