"""Local cluster: a launch script that starts torchrun on this machine."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.environment import SAFE_PATH_ENVIRONMENT
from llm_launch.launcher.jobfile import write_text_atomic
from llm_launch.launcher.plan import Plan
from llm_launch.launcher.tasks import entrypoint

LAUNCH_SCRIPT = "launch.sh"


def worker_threads(nproc: int) -> int:
    """Intra-op threads per worker so that workers together use the machine's cores once."""
    return max(1, (os.cpu_count() or 1) // max(1, nproc))


def torchrun_command(job: JobConfig, plan: Plan, job_yaml: Path) -> list[str]:
    """The torchrun invocation for one node, as an argument list."""
    return [
        sys.executable, "-P", "-m", "torch.distributed.run",
        "--standalone", f"--nproc_per_node={plan.ranks_per_node}",
        "-m", entrypoint(job.task), "--job", str(job_yaml),
    ]


def render_local(job: JobConfig, plan: Plan, out_dir: Path, job_yaml: Path) -> list[Path]:
    """Write launch.sh, which runs the job exactly as `llm-launch ... action=submit` does."""
    command = " ".join(shlex.quote(part) for part in torchrun_command(job, plan, job_yaml))
    threads = worker_threads(plan.ranks_per_node)
    script = out_dir / LAUNCH_SCRIPT
    write_text_atomic(script, "#!/usr/bin/env bash\n"
                      f"# Runs {shlex.quote(job.job_name)} on this machine ({plan.ranks_per_node} processes).\n"
                      "set -euo pipefail\n"
                      f"export OMP_NUM_THREADS={threads}\n"
                      + "".join(f"export {name}={value}\n" for name, value in SAFE_PATH_ENVIRONMENT.items()) +
                      f"exec {command}\n")
    script.chmod(0o755)
    return [script]
