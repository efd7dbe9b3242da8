"""The in-container command of a job, built once and used by the SageMaker, EKS and Slurm paths.

One node runs `torchrun --nnodes N --nproc_per_node P <rendezvous> -m <entrypoint> --job <job.yaml>`.
With neuron.precompile on the NxD (XLA) stack, `neuron_parallel_compile <that same command> --precompile` runs first
(same topology, so the cache it fills is the one training reads; the compile cache is never deleted):
https://awsdocs-neuron.readthedocs-hosted.com/en/latest/frameworks/torch/torch-neuronx/api-reference-guide/training/pytorch-neuron-parallel-compile.html
Commands are argument lists; shell renderers quote every part with shlex,
except ShellExpr pieces, which the renderer itself wrote (variable expansions such as "${HEAD_NODE}").
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.devices import is_trainium, uses_nxd
from llm_launch.launcher.elastic import is_elastic, nnodes_flag
from llm_launch.launcher.tasks import TASKS, entrypoint
from llm_launch.launcher.topology import topology_of

TORCHRUN = "torchrun"
NODE_RUN = "llm_launch.train.node_run"
"""torchrun that ends as its ranks end: the failed rank's own exit code (2 for a one-line error), 128 + N after
signal N, and no traceback after the ranks' last line (train/node_run.py). SageMaker and Slurm nodes run it as
`<python> -m llm_launch.train.node_run <torchrun arguments>`."""
PRECOMPILE_TOOL = "neuron_parallel_compile"
PRECOMPILE_FLAG = "--precompile"
"""Flag of the training entrypoints: trace neuron.precompile_steps steps, write no checkpoint."""
TRAINIUM_PORT = 41000
"""Master/rendezvous port on Trainium: the port NxDT reserves with net.ipv4.ip_local_reserved_ports."""
GPU_PORT = 29500
"""torchrun's default master port."""
TRAINIUM_OPEN_FILES = 65535
"""ulimit -n for Trainium jobs: 32 processes per node exhaust the default open-files limit ("Too many open files"; see
https://awsdocs-neuron.readthedocs-hosted.com/en/latest/frameworks/torch/torch-neuronx/training-troubleshooting.html)."""


OPEN_FILES_LINE = f'ulimit -n {TRAINIUM_OPEN_FILES} 2>/dev/null || ulimit -n "$(ulimit -Hn)"'
"""Raise the open-files limit, to the hard limit where 65535 is above it."""


class ShellExpr(str):
    """Shell text written by a renderer (never user input); placed in a script unquoted."""


def rendezvous_port(job: JobConfig) -> int:
    """The port rank 0's node listens on."""
    return TRAINIUM_PORT if is_trainium(job) else GPU_PORT


def static_rendezvous(master_addr: str, node_rank: int, port: int) -> list[str]:
    """torchrun flags for a fixed master and a known node rank (SageMaker)."""
    return [f"--node_rank={node_rank}", f"--master_addr={master_addr}", f"--master_port={port}"]


def torchrun_argv(job: JobConfig, job_yaml: str, rendezvous: Sequence[str] = (),
                  launcher: Sequence[str] = (TORCHRUN,)) -> list[str]:
    """The torchrun command of one node; `launcher` replaces the bare `torchrun` (e.g. an absolute
    `<python> -m torch.distributed.run`, the same program). An elastic job (trainer.min_nodes) runs
    `--nnodes=MIN:MAX --max-restarts=R`: torchrun restarts the workers on the nodes left after losing one
    (https://docs.pytorch.org/docs/stable/elastic/run.html#elastic-min-1-max-4-tolerates-up-to-3-membership-changes-or-failures)."""
    topo = topology_of(job)
    restarts = [f"--max-restarts={job.trainer.max_restarts}"] if is_elastic(job) else []
    return [*launcher, f"--nnodes={nnodes_flag(job)}", f"--nproc_per_node={topo.ranks_per_node}", *restarts,
            *rendezvous, "-m", entrypoint(job.task), "--job", job_yaml]


def wants_precompile(job: JobConfig) -> bool:
    """Whether a neuron_parallel_compile step runs before training (NxD only: the tool traces XLA graphs; only tasks
    that compile model steps)."""
    return job.neuron.precompile and uses_nxd(job) and TASKS[job.task].compiles


def launch_steps(job: JobConfig, job_yaml: str, rendezvous: Sequence[str] = (),
                 launcher: Sequence[str] = (TORCHRUN,)) -> list[list[str]]:
    """The commands one node runs in order: [precompile,] train."""
    train = torchrun_argv(job, job_yaml, rendezvous, launcher)
    if wants_precompile(job):
        return [[PRECOMPILE_TOOL, *train, PRECOMPILE_FLAG], train]
    return [train]


def shell_word(arg: str) -> str:
    """One argument as shell text: quoted unless the renderer wrote it."""
    return str(arg) if isinstance(arg, ShellExpr) else shlex.quote(arg)


def shell_command(argv: Sequence[str]) -> str:
    """An argument list as one shell command line."""
    return " ".join(shell_word(a) for a in argv)


def shell_exports(env: dict[str, str]) -> list[str]:
    """`export NAME=value` lines, values quoted."""
    return [f"export {name}={shlex.quote(value)}" for name, value in env.items()]


def node_script(job: JobConfig, job_yaml: str, rendezvous: Sequence[str] = (),
                launcher: Sequence[str] = (TORCHRUN,), setup: Sequence[str] = ()) -> str:
    """The shell script one node (or container) runs: `setup` (renderer-written shell lines), limits, then every
    step, the last one exec'd."""
    lines = ["set -euo pipefail", *setup]
    if is_trainium(job):
        lines.append(OPEN_FILES_LINE)
    steps = launch_steps(job, job_yaml, rendezvous, launcher)
    lines += [shell_command(step) for step in steps[:-1]]
    lines.append(f"exec {shell_command(steps[-1])}")
    return "\n".join(lines) + "\n"
