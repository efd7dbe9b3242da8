"""Faults a test can inject into a real run, through one environment variable (never set in a rendered job).

LLM_LAUNCH_TEST_FAULTS holds comma-separated entries:
- checkpoint_write_delay=<seconds>[@<step>]: an async save's checkpoint thread (of step's save only, when named)
  waits this long after DCP wrote the shards and before the checkpoint is recorded, so a test can kill the job
  while a save is in flight;
- hang=<rank>@<step>: that rank stops (sleeps for good) when it reaches the end-of-step collective of that step,
  so the other ranks wait inside the collective, as behind a hung NCCL call;
- slow=<rank>:<seconds>: that rank sleeps this long before every end-of-step collective (a straggler).
"""

from __future__ import annotations

import os
import time

FAULTS_ENV = "LLM_LAUNCH_TEST_FAULTS"


def _faults() -> dict[str, str]:
    entries = [e.strip() for e in os.environ.get(FAULTS_ENV, "").split(",") if e.strip()]
    return dict(e.split("=", 1) for e in entries if "=" in e)


def checkpoint_write_delay(step: int) -> None:
    """The checkpoint_write_delay fault: sleep in the checkpoint thread."""
    delay, _, at = _faults().get("checkpoint_write_delay", "").partition("@")
    if delay and (not at or int(at) == step):
        time.sleep(float(delay))


def hang_here(rank: int, step: int) -> None:
    """The hang fault (never return when this rank reaches the named step) and the slow fault."""
    faults = _faults()
    if faults.get("hang") == f"{rank}@{step}":
        print(f"test fault: rank {rank} hangs at step {step}", flush=True)
        while True:
            time.sleep(3600)
    slow_rank, _, seconds = faults.get("slow", "").partition(":")
    if slow_rank and int(slow_rank) == rank:
        time.sleep(float(seconds))
