"""A stop request from SIGTERM (spot interruption, pod eviction, scancel) or Ctrl-C, honoured at a step boundary.

The handler only sets a flag; after each step the ranks agree (any rank that saw the signal
stops them all), save a checkpoint and exit, well within the grace period platforms give
(torchrun waits 30 s, SageMaker spot and Kubernetes give 2 minutes and 30 s by default).
"""

from __future__ import annotations

import signal

import torch
import torch.distributed as dist


class StopRequest:
    """Set by SIGTERM or Ctrl-C; agreed() tells every rank whether any rank was asked to stop.

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

    def agreed(self, device: torch.device) -> bool:
        flag = torch.tensor(1.0 if self.signalled else 0.0, device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())
