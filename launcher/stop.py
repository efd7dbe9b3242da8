"""SIGTERM and Ctrl-C to llm-launch, from the moment it starts until it exits.

Before a local job's processes are started, the first signal ends the command at once (Stopped): nothing has
trained, nothing is left running. From then on (launcher/clusters/local/run.py) a signal is recorded and the
stop file is written into the output folder; every rank looks for that file at each step boundary
(train/signals.py), so ranks that already run and ranks torchrun has not started yet alike stop after the
step in progress, or after their first step, with a checkpoint. No rank is ever signalled before it can
handle the signal (a rank still importing would die without a word). A second Ctrl-C kills the job at once.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

STOP_FILE = ".llm-launch.stop"
"""Written into the output folder when llm-launch is asked to stop a local job; the ranks read it."""
STOP_FILE_ENV = "LLM_LAUNCH_STOP_FILE"
"""Tells the ranks where the stop file of their launcher is (set by the local runner only)."""
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stopped(BaseException):
    """A stop signal arrived before the job's processes were started (a BaseException, like KeyboardInterrupt, so
    that no `except Exception` on the way swallows it)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_stopped(signum, frame) -> None:
    raise Stopped(signum)


def stop_before_start() -> None:
    """From now until the job starts, a stop signal ends the command (Stopped)."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, _raise_stopped)


def default_stop_signals() -> None:
    """Python's own handling again (a remote submission: its own client decides what a signal interrupts)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)


class StopRecorder:
    """Once the job may start: a first signal writes the stop file (the ranks stop after their step), a second
    Ctrl-C calls kill."""

    def __init__(self, stop_file: Path, kill: Callable[[], None]):
        self.stop_file, self.kill = stop_file, kill
        self.received: list[int] = []
        self.closed = False
        stop_file.unlink(missing_ok=True)  # a stale request of an earlier run
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._handle)

    def _handle(self, signum, frame) -> None:
        self.received.append(signum)
        if self.closed:
            return
        if signum == signal.SIGINT and self.received.count(signal.SIGINT) > 1:
            self.kill()
            return
        self.stop_file.write_text(f"{signum}\n", encoding="ascii")

    def close(self) -> None:
        """The job has ended: the request is spent (a later signal only waits for the command's last line)."""
        self.closed = True
        self.stop_file.unlink(missing_ok=True)
