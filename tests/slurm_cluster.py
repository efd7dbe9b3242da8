"""A real single-node Slurm (slurmctld, slurmd, munged) for tests, started by scripts/slurm-single-node.sh.

Each cluster lives in its own folder with its own ports, so tests of other sessions and other
variants (an unresolvable NodeName, fake GPUs) run side by side. The daemons are stopped when the
test session ends. Without root or apt the Slurm packages cannot be installed and the tests that
need them skip, unless LLM_LAUNCH_REQUIRE_SLURM=1 (set by .ci/run), which turns the skip into a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from llm_launch.launcher import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "scripts" / "slurm-single-node.sh"
REQUIRE_ENV = "LLM_LAUNCH_REQUIRE_SLURM"
DAEMONS = ("slurmctld", "slurmd", "munged", "sbatch")


def _free_port_pair() -> int:
    """A port p with p and p + 1 free (slurmctld and slurmd)."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            if port >= 65535:
                continue
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
        return port
    raise RuntimeError("no two adjacent free ports")


def unavailable(reason: str) -> None:
    """Skip (or, under LLM_LAUNCH_REQUIRE_SLURM=1, fail) a test that needs a real Slurm."""
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"a real Slurm is required ({REQUIRE_ENV}=1) but {reason}")
    pytest.skip(f"no real Slurm: {reason}")


def ensure_installed() -> None:
    """Install slurm-wlm and munge with the script (root and apt needed) when they are missing."""
    if all(shutil.which(tool) for tool in DAEMONS):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        unavailable("slurm-wlm and munge are not installed and this is not a root shell with apt-get "
                    f"(run: sudo {SCRIPT} --install-only)")
    done = subprocess.run(["bash", str(SCRIPT), "--install-only"], capture_output=True, text=True, timeout=600)
    if done.returncode or not all(shutil.which(tool) for tool in DAEMONS):
        unavailable(f"installing slurm-wlm and munge failed: {(done.stderr or done.stdout).strip()[-300:]}")


@dataclass
class SlurmCluster:
    """One running single-node cluster; `env` is os.environ with SLURM_CONF pointing at it."""

    root: Path
    node: str
    options: dict = field(default_factory=dict)

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def tool(self, *argv: str) -> subprocess.CompletedProcess:
        """Run a Slurm command against this cluster."""
        return subprocess.run(list(argv), capture_output=True, text=True, env=self.env, timeout=60)

    def start(self) -> None:
        argv = ["bash", str(SCRIPT), "--dir", str(self.root), "--port", str(_free_port_pair()),
                "--node-name", self.node]
        for key, value in self.options.items():
            argv += [f"--{key.replace('_', '-')}", str(value)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if done.returncode:
            unavailable(f"the Slurm daemons did not start: {(done.stderr or done.stdout).strip()[-500:]}")

    def stop(self) -> None:
        """Cancel what is left (a failed test's jobs), then stop the daemons: no job outlives its cluster."""
        jobs = self.tool("squeue", "-h", "-o", "%i").stdout.split()
        if jobs:
            self.tool("scancel", *jobs)
            try:
                self.wait_idle(timeout=30)
            except AssertionError:
                pass
        subprocess.run(["bash", str(SCRIPT), "--stop", "--dir", str(self.root)], capture_output=True, timeout=60)

    def wait_idle(self, timeout: float = 120) -> None:
        """Wait until no job is pending or running (a test's jobs must not hold the node for the next)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.tool("squeue", "-h", "-t", "PD,R,CG").stdout.strip():
                return
            time.sleep(0.5)
        raise AssertionError(f"jobs still queued after {timeout} s: {self.tool('squeue').stdout}")
