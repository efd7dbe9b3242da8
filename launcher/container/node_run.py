"""Run one node's torchrun and end with the hang exit code when the training watchdog fired on this node.

The watchdog (train/watchdog.py) ends every rank of a hung step with HANG_EXIT_CODE (75), but torchrun reports a
failed worker group with its own exit code 1, so a cluster's restart machinery (a Kubernetes restartPolicy ExitCode,
a Slurm requeue, a SageMaker retry) would see no difference between a hang and any other failure. Every node's
command therefore runs torchrun under this wrapper: it gives torchrun (and so its workers) a marker path of its own,
fresh for this run of the node (HANG_MARKER_ENV); a rank the watchdog ends touches it first; when torchrun fails and
the marker is there, the wrapper exits 75, else with torchrun's own code. SIGTERM, SIGINT, SIGHUP, SIGUSR1 and
SIGUSR2 are passed on to torchrun, so a scheduler's warning still reaches the ranks (the wrapper may be PID 1 in a
container). Torch-free: runs in any image llm-launch is installed in, as `python -m llm_launch.launcher.container.node_run
<command...>`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from llm_launch.launcher.progress import HANG_EXIT_CODE

HANG_MARKER_ENV = "LLM_LAUNCH_HANG_MARKER"
"""The file a rank touches before it exits with HANG_EXIT_CODE (set by this wrapper, read by train/watchdog.py)."""
NODE_RUN_MODULE = "llm_launch.launcher.container.node_run"
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)


def run(argv: list[str]) -> int:
    """Run argv to its end with the marker set; the exit code the node should end with."""
    folder = Path(tempfile.mkdtemp(prefix="llm-launch-node-"))
    marker = folder / "hang"
    try:
        child = subprocess.Popen(argv, env={**os.environ, HANG_MARKER_ENV: str(marker)})
        previous = {sig: signal.signal(sig, lambda number, _frame: child.send_signal(number)) for sig in FORWARDED}
        try:
            code = child.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if code != 0 and marker.exists():
            print(f"llm-launch: the training watchdog ended a hung step on this node ({argv[0]} exited with {code}); "
                  f"exiting with code {HANG_EXIT_CODE}", file=sys.stderr, flush=True)
            return HANG_EXIT_CODE
        return code if code >= 0 else 128 - code
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(f"usage: python -m {NODE_RUN_MODULE} <command> [args...]")
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
