"""A stop request from SIGTERM (spot interruption, pod eviction, scancel), Ctrl-C, or the local launcher's stop file,
honoured at a step boundary.

The handler only sets a flag; after each step the ranks agree (any rank that saw the signal
stops them all), save a checkpoint and exit, well within the grace period platforms give
(torchrun waits 30 s, SageMaker spot and Kubernetes give 2 minutes and 30 s by default).
The local runner never signals ranks: it writes a stop file (launcher/stop.py) that every rank looks for at
each step, so a rank torchrun starts after the request stops after its first step.
"""

from __future__ import annotations

import os
import signal

from llm_launch.launcher.stop import STOP_FILE_ENV


class StopRequest:
    """Set by SIGTERM or Ctrl-C, or by the launcher's stop file; each step's result carries the ranks'
    votes (llm_launch.train.backend.StepResult.stop), so all stop together.

    A second Ctrl-C interrupts at once (no checkpoint), for a user who will not wait.
    """

    def __init__(self):
        self._signalled = False
        self._signum: int | None = None
        self.stop_file = os.environ.get(STOP_FILE_ENV) or None
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    @property
    def signalled(self) -> bool:
        """Whether this rank was asked to stop (a signal, or its launcher's stop file; one stat per step)."""
        if not self._signalled and self.stop_file is not None and os.path.exists(self.stop_file):
            self._signalled = True
            try:  # the launcher writes the signal it received (launcher/stop.py)
                with open(self.stop_file, encoding="ascii") as text:
                    self._signum = int(text.read().strip())
            except (OSError, ValueError):
                pass
        return self._signalled

    @property
    def reason(self) -> str:
        """What asked this rank to stop, for the one-line messages: "SIGTERM", "Ctrl-C (SIGINT)", or "a stop
        request" when the rank only learned of it from another rank's vote."""
        return signal_words(self._signum) if self._signum is not None else "a stop request"

    def _handle(self, signum, frame) -> None:
        if self._signalled and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self._signalled = True
        self._signum = signum


def signal_words(signum: int) -> str:
    """A signal as the stop messages name it: Ctrl-C for SIGINT, else its name (SIGTERM)."""
    try:
        name = signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
    return "Ctrl-C (SIGINT)" if signum == signal.SIGINT else name
