"""Slurm (SageMaker HyperPod, AWS ParallelCluster): an sbatch script.

One srun task per node starts torchrun; c10d rendezvous on the first node of the allocation gives
node ranks, so every node runs the identical command. With slurm.container_image, pyxis/enroot run
the step in that image with the shared file system mounted. #SBATCH lines carry only values that
validation has restricted to Slurm-name characters; everything in the script body is shlex-quoted.
"""

from __future__ import annotations

from pathlib import Path

from launcher.config.schema import JobConfig
from launcher.environment import backend_environment, is_trainium
from launcher.jobfile import write_text_atomic
from launcher.plan import Plan
from launcher.render.command import (
    OPEN_FILES_LINE,
    ShellExpr,
    launch_steps,
    rendezvous_port,
    shell_command,
    shell_exports,
)
from launcher.render.names import slurm_job_name
from launcher.topology import topology_of

SCRIPT_FILE = "launch.sbatch"
LOG_PATTERN = "slurm-%j.out"
"""Output file of the batch job, in output_dir (passed as sbatch --output at submission)."""


def container_mounts(job: JobConfig) -> str:
    """pyxis --container-mounts: the shared file system, and output_dir when it lies elsewhere."""
    shared = job.cluster.slurm.shared_dir.rstrip("/") or "/"
    mounts = [shared]
    out = job.output_dir.rstrip("/")
    if not (out == shared or out.startswith(f"{shared}/")):
        mounts.append(out)
    return ",".join(f"{m}:{m}" for m in mounts)


def srun_prefix(job: JobConfig) -> list[str]:
    """srun with one task per node, inside the container when one is set."""
    nodes = topology_of(job).num_nodes
    argv = ["srun", f"--nodes={nodes}", "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
    image = job.cluster.slurm.container_image
    if image:
        argv += [f"--container-image={image}", f"--container-mounts={container_mounts(job)}"]
    return argv


def sbatch_header(job: JobConfig) -> list[str]:
    """#SBATCH lines (values validated or sanitised to need no quoting)."""
    slurm = job.cluster.slurm
    lines = [f"#SBATCH --job-name={slurm_job_name(job.job_name)}",
             f"#SBATCH --nodes={topology_of(job).num_nodes}",
             "#SBATCH --ntasks-per-node=1",
             "#SBATCH --exclusive",
             f"#SBATCH --time={slurm.time_limit}"]
    if slurm.partition:
        lines.append(f"#SBATCH --partition={slurm.partition}")
    if slurm.account:
        lines.append(f"#SBATCH --account={slurm.account}")
    return lines


def sbatch_script(job: JobConfig, job_yaml: str) -> str:
    """The whole batch script."""
    port = rendezvous_port(job)
    rendezvous = ["--rdzv_backend=c10d", ShellExpr(f'"--rdzv_endpoint=${{HEAD_NODE}}:{port}"'),
                  ShellExpr('"--rdzv_id=${SLURM_JOB_ID}"')]
    lines = ["#!/bin/bash", *sbatch_header(job),
             f"# Rendered by llm-launch; submit with: sbatch --output=<output_dir>/{LOG_PATTERN} {SCRIPT_FILE}",
             "set -euo pipefail", *shell_exports(backend_environment(job, job.cluster.slurm.shared_dir))]
    if is_trainium(job):
        lines.append(OPEN_FILES_LINE)
    lines.append('HEAD_NODE=$(scontrol show hostnames "${SLURM_JOB_NODELIST}" | head -n 1)')
    lines.append('echo "llm-launch: ${SLURM_JOB_NUM_NODES} node(s), rendezvous on ${HEAD_NODE}"')
    srun = srun_prefix(job)
    lines += [shell_command([*srun, *step]) for step in launch_steps(job, job_yaml, rendezvous)]
    return "\n".join(lines) + "\n"


def render_slurm(job: JobConfig, plan: Plan, out_dir: Path, job_yaml: str) -> list[Path]:
    """Write launch.sbatch."""
    path = out_dir / SCRIPT_FILE
    write_text_atomic(path, sbatch_script(job, job_yaml))
    path.chmod(0o755)
    return [path]
