"""Command-line tools of a cluster (sbatch, kubectl, ...): found on PATH and run, failures as one line."""

from __future__ import annotations

import shutil
import subprocess

from llm_launch.launcher.clusters.base import RunnerError


def require_tool(name: str, hint: str) -> str:
    """Absolute path of a command-line tool, or a one-line error naming it."""
    path = shutil.which(name)
    if not path:
        raise RunnerError(f"{name} is not on PATH; {hint}")
    return path


def tool_output(argv: list[str]) -> str:
    """stdout of a tool that may fail or be missing ('' then), for questions another source can answer."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def run_tool(argv: list[str], what: str) -> str:
    """Run a cluster tool; its stdout, or a one-line error with the last line it printed."""
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode:
        lines = [ln for ln in (done.stderr or done.stdout).strip().splitlines() if ln.strip()]
        detail = lines[-1] if lines else f"exit code {done.returncode}"
        raise RunnerError(f"{what} failed: {detail}")
    return done.stdout
