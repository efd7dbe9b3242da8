"""Ties a rank's life to the processes that started it, so no rank outlives its launcher.

torchrun starts every rank in a session of its own, so a signal to the launcher's process group
never reaches the ranks. Two ties close that gap (Linux):
- PR_SET_PDEATHSIG: the kernel sends SIGKILL to this rank the moment its parent (torchrun) exits;
  the local runner sets the same on torchrun, so the chain falls together.
- A watchdog thread for llm-launch itself (LLM_LAUNCH_PID, set by the local runner): when that
  process is gone, the rank kills itself. This also covers a parent that died before the first tie.
A rank killed this way writes nothing more: SIGKILL ends it between two instructions.
"""

from __future__ import annotations

import os
import signal
import threading
import time

from llm_launch.launcher.processes import die_with_parent, process_alive

LAUNCHER_PID_ENV = "LLM_LAUNCH_PID"
"""The pid of the llm-launch process that started this job (set by the local runner only)."""
WATCH_EVERY_S = 0.25


def _watch(pid: int) -> None:
    while process_alive(pid):
        time.sleep(WATCH_EVERY_S)
    os.kill(os.getpid(), signal.SIGKILL)


def tie_rank_to_launcher() -> None:
    """Called first thing in every rank: die with torchrun, and with llm-launch when it started us."""
    if "TORCHELASTIC_RUN_ID" not in os.environ:  # not started by torchrun (a test calling the entrypoint)
        return
    die_with_parent()
    launcher = os.environ.get(LAUNCHER_PID_ENV, "")
    if launcher.isdigit():
        pid = int(launcher)
        if not process_alive(pid):
            os.kill(os.getpid(), signal.SIGKILL)
        threading.Thread(target=_watch, args=(pid,), name="llm-launch-lifeline", daemon=True).start()
