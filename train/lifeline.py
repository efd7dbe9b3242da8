"""Ties a rank's life to the processes that started it, so no rank outlives its launcher.

torchrun starts every rank in a session of its own, so a signal to the launcher's process group
never reaches the ranks. Two ties close that gap (Linux):
- PR_SET_PDEATHSIG: the kernel sends SIGKILL to this rank the moment its parent (torchrun) exits;
  the launcher sets the same on torchrun, so the chain falls together.
- A watchdog thread for the launcher itself (LLM_LAUNCH_PID, set by the local runner): when that
  process is gone, the rank kills itself. This also covers a parent that died before the first tie.
A rank killed this way writes nothing more: SIGKILL ends it between two instructions.
(https://man7.org/linux/man-pages/man2/prctl.2.html, PR_SET_PDEATHSIG)
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1
LAUNCHER_PID_ENV = "LLM_LAUNCH_PID"
"""The pid of the llm-launch process that started this job (set by the local runner only)."""
WATCH_EVERY_S = 0.25


def die_with_parent(expected_parent: int | None = None) -> None:
    """Ask the kernel to SIGKILL this process when its parent exits; exit now if it already has."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if expected_parent is not None and os.getppid() != expected_parent:
        os.kill(os.getpid(), signal.SIGKILL)


def process_alive(pid: int) -> bool:
    """Whether a process with this pid exists (on this host)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _watch(pid: int) -> None:
    while process_alive(pid):
        time.sleep(WATCH_EVERY_S)
    os.kill(os.getpid(), signal.SIGKILL)


def tie_rank_to_launcher() -> None:
    """Called first thing in every rank: die with torchrun, and with llm-launch when it started us."""
    die_with_parent()
    launcher = os.environ.get(LAUNCHER_PID_ENV, "")
    if launcher.isdigit():
        pid = int(launcher)
        if not process_alive(pid):
            os.kill(os.getpid(), signal.SIGKILL)
        threading.Thread(target=_watch, args=(pid,), name="llm-launch-lifeline", daemon=True).start()
