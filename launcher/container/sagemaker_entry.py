"""Entry point of a SageMaker training container: python -m llm_launch.launcher.container.sagemaker_entry --job job.yaml.

Reads the hosts of the job from /opt/ml/input/config/resourceconfig.json (the platform contract:
https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-training-algo-running-container.html;
SM_HOSTS / SM_CURRENT_HOST when set win, e.g. under the training toolkit), derives this node's rank
and the master, then runs the job's steps (llm_launch.launcher.render.command) with a static rendezvous, torchrun as
llm_launch.train.node_run under this Python, so the node exits with its failed rank's own code (2 for a one-line
error) and no torchrun traceback.

Hosts arrive sorted as text (algo-1, algo-10, algo-11, ..., algo-2). Every node orders them the same
way here, numerically by their trailing number, so node ranks follow algo-N and the master is algo-1;
any consistent order would do, as long as all nodes use the same one.
MASTER_PORT in the container's environment (torchrun's own variable) overrides the rendezvous port.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
from pathlib import Path

from llm_launch.launcher.environment import is_trainium
from llm_launch.launcher.jobfile import read_job
from llm_launch.launcher.render.command import (
    NODE_RUN,
    TRAINIUM_OPEN_FILES,
    launch_steps,
    rendezvous_port,
    static_rendezvous,
)

RESOURCE_CONFIG = Path("/opt/ml/input/config/resourceconfig.json")


class HostsError(Exception):
    """The container cannot tell which hosts the job has or which one it is."""


def host_order(host: str) -> tuple[str, int, str]:
    """Sort key: name stem, then the trailing number as a number (algo-2 before algo-10)."""
    match = re.fullmatch(r"(.*?)(\d+)", host)
    if match:
        return match.group(1), int(match.group(2)), host
    return host, -1, host


def read_hosts(env: dict[str, str], resource_config: Path = RESOURCE_CONFIG) -> tuple[list[str], str]:
    """(hosts, current host) from SM_HOSTS/SM_CURRENT_HOST, else resourceconfig.json."""
    if env.get("SM_HOSTS") and env.get("SM_CURRENT_HOST"):
        return list(json.loads(env["SM_HOSTS"])), env["SM_CURRENT_HOST"]
    try:
        config = json.loads(resource_config.read_text(encoding="utf-8"))
        return list(config["hosts"]), config["current_host"]
    except (OSError, ValueError, KeyError) as exc:
        raise HostsError(f"neither SM_HOSTS/SM_CURRENT_HOST nor a readable {resource_config}: {exc}") from None


def node_place(hosts: list[str], current: str) -> tuple[int, str]:
    """(node rank of current, master host) in the numeric-aware order."""
    ordered = sorted(hosts, key=host_order)
    if current not in ordered:
        raise HostsError(f"current host {current!r} is not among the hosts {ordered}")
    return ordered.index(current), ordered[0]


def node_steps(job_yaml: str, env: dict[str, str], resource_config: Path = RESOURCE_CONFIG) -> list[list[str]]:
    """The commands this node runs, with its rank and the master filled in."""
    job = read_job(job_yaml)
    hosts, current = read_hosts(env, resource_config)
    if len(hosts) != job.trainer.num_nodes:
        raise HostsError(f"the job has {len(hosts)} hosts but job.yaml plans trainer.num_nodes="
                         f"{job.trainer.num_nodes}")
    rank, master = node_place(hosts, current)
    port = int(env["MASTER_PORT"]) if env.get("MASTER_PORT", "").isdigit() else rendezvous_port(job)
    return launch_steps(job, job_yaml, static_rendezvous(master, rank, port), [sys.executable, "-m", NODE_RUN])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m llm_launch.launcher.container.sagemaker_entry",
                                     description="Start a job's torchrun on this SageMaker node.")
    parser.add_argument("--job", required=True, help="job.yaml (in the 'code' input channel)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands as JSON and exit")
    args = parser.parse_args(argv)
    try:
        steps = node_steps(args.job, dict(os.environ))
    except HostsError as exc:
        sys.exit(f"sagemaker_entry: {exc}")
    if args.dry_run:
        print(json.dumps(steps))
        return
    if is_trainium(read_job(args.job)):
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = TRAINIUM_OPEN_FILES if hard == resource.RLIM_INFINITY else min(TRAINIUM_OPEN_FILES, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    for step in steps[:-1]:
        print(f"sagemaker_entry: running {step[0]} ...", flush=True)
        done = subprocess.run(step, check=False)
        if done.returncode:
            sys.exit(f"sagemaker_entry: {step[0]} exited with {done.returncode}")
    os.execvp(steps[-1][0], steps[-1])


if __name__ == "__main__":
    main()
