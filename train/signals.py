"""A stop request from SIGTERM (spot interruption, pod eviction, scancel) or Ctrl-C, honoured at a step boundary.

The handler only sets a flag; after each step the ranks agree (any rank that saw the signal
stops them all), save a checkpoint and exit, well within the grace period platforms give
(torchrun waits 30 s, SageMaker spot and Kubernetes give 2 minutes and 30 s by default).
"""

from __future__ import annotations

import signal


class StopRequest:
    """Set by SIGTERM or Ctrl-C; each step's result carries the ranks'
    votes (llm_launch.train.backend.StepResult.stop), so all stop together.

    A second Ctrl-C interrupts at once (no checkpoint), for a user who will not wait.
    """

    def __init__(self):
        self.signalled = False
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum, frame) -> None:
        if self.signalled and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signalled = True
