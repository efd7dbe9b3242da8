"""Slurm (SageMaker HyperPod, AWS ParallelCluster): an sbatch script.

One srun task per node runs the node script (torchrun); c10d rendezvous at the first node's address
gives node ranks, so every node runs the identical command. The address is the node's NodeAddr from
scontrol, which slurmctld itself uses to reach it, because a NodeName need not resolve; the first
node hosts the rendezvous store (is_host) without guessing from host names. The step itself looks the first node up
each time it starts (HyperPod's auto-resume restarts the step, not the batch script, after replacing a node).
Without a container the job runs the Python llm-launch runs from (or cluster.slurm.python) with its bin/ first on PATH, so it
never depends on the submitting shell's PATH (sbatch passes that shell's environment on). With
slurm.container_image, pyxis/enroot run the step in that image with the shared file system mounted.
GPU jobs ask for their GPUs per node (the step sees them as CUDA_VISIBLE_DEVICES); --signal warns
the step before the time limit, and training saves a checkpoint on it. With slurm.hyperpod, srun
--auto-resume=1 lets HyperPod restart the step on a replaced node
(https://docs.aws.amazon.com/sagemaker/latest/dg/sagemaker-hyperpod-resiliency-slurm-auto-resume.html).
An elastic job (trainer.min_nodes) asks for a node range, `--nodes=<min>-<max>` (Slurm allocates at least min and
at most max nodes), with `--no-kill` on the allocation and on the step (a failed node ends neither; the tasks on the
nodes left go on) and `--requeue` (a job that still fails, e.g. losing the head node that hosts the c10d store, is
queued again and resumes from its newest checkpoint): https://slurm.schedmd.com/sbatch.html#OPT_nodes,
https://slurm.schedmd.com/sbatch.html#OPT_no-kill, https://slurm.schedmd.com/srun.html#OPT_no-kill,
https://slurm.schedmd.com/sbatch.html#OPT_requeue. The step runs on every node the allocation got
(SLURM_JOB_NUM_NODES), and torchrun (--nnodes=<min>:<max>) restarts the workers on the nodes left.
#SBATCH lines carry only values that validation has restricted to Slurm-name characters; everything
in the script body is shlex-quoted.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.elastic import is_elastic, node_range
from llm_launch.launcher.environment import backend_environment
from llm_launch.launcher.jobfile import write_text_atomic
from llm_launch.launcher.plan import Plan
from llm_launch.launcher.render.command import (
    NODE_RUN,
    ShellExpr,
    node_script,
    rendezvous_port,
    shell_command,
    shell_exports,
)
from llm_launch.launcher.render.names import slurm_job_name
from llm_launch.launcher.topology import topology_of

SCRIPT_FILE = "launch.sbatch"
LOG_PATTERN = "slurm-%j.out"
"""Output file of the batch job, in output_dir (passed as sbatch --output at submission)."""
HEAD_LINES = [
    'HEAD_NODE=$(scontrol show hostnames "${SLURM_JOB_NODELIST}" | head -n 1)',
    "HEAD_ADDR=$(scontrol -o show node \"${HEAD_NODE}\" | sed -n 's/.* NodeAddr=\\([^ ]*\\).*/\\1/p')",
    'export HEAD_NODE HEAD_ADDR="${HEAD_ADDR:-${HEAD_NODE}}"',
]
"""The first node of the allocation and the address slurmctld reaches it at (its NodeAddr), as the batch script
starts: what the step uses where it cannot ask scontrol itself (a container image without Slurm's tools)."""
STEP_HEAD_LINES = [
    "# Every start of the step finds its first node anew: HyperPod's auto-resume restarts the step, not this batch",
    "# script, on a replaced node, so the address from the batch script's start may be stale.",
    "if command -v scontrol >/dev/null; then",
    '  HEAD_NODE=$(scontrol show hostnames "${SLURM_STEP_NODELIST:-${SLURM_JOB_NODELIST}}" | head -n 1)',
    "  HEAD_ADDR=$(scontrol -o show node \"${HEAD_NODE}\" | sed -n 's/.* NodeAddr=\\([^ ]*\\).*/\\1/p')",
    '  HEAD_ADDR="${HEAD_ADDR:-${HEAD_NODE}}"',
    "fi",
    'if [ "${SLURM_NODEID:-0}" = 0 ]; then',
    '  echo "llm-launch: step ${SLURM_STEP_ID:-?} on ${SLURM_STEP_NUM_NODES:-${SLURM_JOB_NUM_NODES}} node(s), '
    'rendezvous on ${HEAD_NODE} at ${HEAD_ADDR}"',
    "fi",
]
"""The step's own first node (SLURM_STEP_NODELIST) and its NodeAddr, found when the step starts."""


def job_python(job: JobConfig) -> str:
    """The Python of the environment the job runs in (outside a container)."""
    return job.cluster.slurm.python or sys.executable


def torchrun_launcher(job: JobConfig) -> list[str]:
    """torchrun as the job starts it (llm_launch.train.node_run, which exits as its ranks do): with the image's own
    python in a container, else the environment's by absolute path."""
    if job.cluster.slurm.container_image:
        return ["python", "-m", NODE_RUN]
    return [job_python(job), "-m", NODE_RUN]


def environment_lines(job: JobConfig) -> list[str]:
    """Put the environment's bin/ (neuron_parallel_compile, llm-launch) first on PATH, outside a container."""
    if job.cluster.slurm.container_image:
        return []
    bin_dir = str(Path(job_python(job)).parent)
    return ["# The environment llm-launch runs from; the job does not depend on the submitting shell's PATH.",
            f'export PATH={shlex.quote(bin_dir)}:"${{PATH}}"']


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
    if is_elastic(job):
        argv = ["srun", ShellExpr('"--nodes=${SLURM_JOB_NUM_NODES}"'), "--ntasks-per-node=1", "--no-kill",
                "--kill-on-bad-exit=0"]
    else:
        argv = ["srun", f"--nodes={topology_of(job).num_nodes}", "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
    if job.cluster.slurm.hyperpod:
        argv.append("--auto-resume=1")
    image = job.cluster.slurm.container_image
    if image:
        argv += [f"--container-image={image}", f"--container-mounts={container_mounts(job)}"]
    return argv


def sbatch_header(job: JobConfig) -> list[str]:
    """#SBATCH lines (values validated or sanitised to need no quoting)."""
    slurm = job.cluster.slurm
    low, high = node_range(job)
    lines = [f"#SBATCH --job-name={slurm_job_name(job.job_name)}",
             f"#SBATCH --nodes={low}-{high}" if low != high else f"#SBATCH --nodes={high}",
             "#SBATCH --ntasks-per-node=1",
             "#SBATCH --exclusive"]
    if low != high:
        lines += ["#SBATCH --no-kill", "#SBATCH --requeue"]
    if job.instance.accelerator == "nvidia" and slurm.request_gpus:
        lines.append(f"#SBATCH --gpus-per-node={job.instance.accelerators_per_node}")
    lines.append(f"#SBATCH --time={slurm.time_limit}")
    if slurm.signal_before_s:
        lines.append(f"#SBATCH --signal=TERM@{slurm.signal_before_s}")
    if slurm.partition:
        lines.append(f"#SBATCH --partition={slurm.partition}")
    if slurm.account:
        lines.append(f"#SBATCH --account={slurm.account}")
    return lines


def shutdown_lines(job: JobConfig) -> list[str]:
    """torchrun kills its workers 30 s after passing on SIGTERM unless told otherwise
    (https://docs.pytorch.org/docs/stable/elastic/run.html); Slurm's own grace is what limits the save."""
    slurm = job.cluster.slurm
    grace = max(slurm.signal_before_s, slurm.kill_wait_s)
    return ["# Workers may take the whole grace Slurm gives after SIGTERM to save a checkpoint.",
            f"export TORCH_ELASTIC_SHUTDOWN_TIMEOUT={grace}"]


def sbatch_script(job: JobConfig, job_yaml: str) -> str:
    """The whole batch script."""
    port = job.cluster.slurm.rendezvous_port or rendezvous_port(job)
    rendezvous = ["--rdzv_backend=c10d", ShellExpr(f'"--rdzv_endpoint=${{HEAD_ADDR}}:{port}"'),
                  ShellExpr('"--rdzv_id=${SLURM_JOB_ID}"'), ShellExpr('"--rdzv_conf=is_host=$((SLURM_NODEID == 0))"')]
    step = node_script(job, job_yaml, rendezvous, torchrun_launcher(job), STEP_HEAD_LINES)
    lines = ["#!/bin/bash", *sbatch_header(job),
             f"# Rendered by llm-launch; submit with: sbatch --output=<output_dir>/{LOG_PATTERN} {SCRIPT_FILE}",
             "set -euo pipefail", *shell_exports(backend_environment(job, job.cluster.slurm.shared_dir)),
             *environment_lines(job), *shutdown_lines(job), *HEAD_LINES,
             shell_command([*srun_prefix(job), "bash", "-c", step])]
    return "\n".join(lines) + "\n"


def render_slurm(job: JobConfig, plan: Plan, out_dir: Path, job_yaml: str) -> list[Path]:
    """Write launch.sbatch."""
    path = out_dir / SCRIPT_FILE
    write_text_atomic(path, sbatch_script(job, job_yaml))
    path.chmod(0o755)
    return [path]
