"""How a job ends on a problem of its input or state: one line, from one rank, exit 2; other ranks quietly.

Every rank that meets a JobError calls report(); the first on its node prints the line (a marker file
keyed by the torchrun agent that started the ranks), the rest print nothing. A rank that then fails
because that rank is gone (a collective error) exits quietly too. Any other failure is a bug and keeps
its traceback (train.log for local runs).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

JOB_ERROR_EXIT = 2


def _agent_key() -> str:
    """This node's torchrun agent: its pid and start time (pids are reused; the pair is not)."""
    parent = os.getppid()
    try:
        with open(f"/proc/{parent}/stat", encoding="ascii") as stat:
            started = stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        started = "0"
    return f"{parent}-{started}"


def _marker() -> Path:
    return Path(tempfile.gettempdir()) / f"llm-launch-job-error-{os.getuid()}-{_agent_key()}"


def _under_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ


def another_rank_reported() -> bool:
    """Whether a rank of this node already reported a job error (always False outside torchrun)."""
    return _under_torchrun() and _marker().exists()


def report(task: str, message: str) -> NoReturn:
    """Print `train.<task>: message` unless a rank of this node already did, and exit 2."""
    try:
        if _under_torchrun():
            os.close(os.open(_marker(), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        first = True
    except FileExistsError:
        first = False
    except OSError:  # no writable temp folder: rather twice than never
        first = True
    if first:
        print(f"train.{task}: {message}", file=sys.stderr, flush=True)
    sys.exit(JOB_ERROR_EXIT)
