"""torchrun's c10d rendezvous for the nodes of a cluster job, which outlasts the loss of its store while the ranks run.

An elastic job's rendezvous store lives in the torchrun agent of one node (the c10d backend: the agent on the host
named in --rdzv-endpoint serves it). While its ranks run, every other agent asks that store each monitor interval
whether nodes wait to join (`num_nodes_waiting`,
https://github.com/pytorch/pytorch/blob/main/torch/distributed/elastic/agent/server/api.py). When a job fails, the
ranks of every node end at about the same time (a hang: each rank's watchdog exits 75), and the hosting node's agent
then exits; an agent whose own ranks had exited a moment later, but which had not looked yet, finds the store gone,
and torchrun ends that node with exit code 1 and a RendezvousConnectionError traceback, not with its ranks' code.

Here that question is answered "no node waits" for up to `lost_store_grace` seconds (a --rdzv-conf key; default
LOST_STORE_GRACE_S) after the store was first found gone, so the agent goes on watching its ranks and ends the node
as they end; no node can join a rendezvous whose store has gone. Past that, torch's error stands. Everything else is
torch's own c10d handler.
"""

from __future__ import annotations

import sys
import time

from torch.distributed.elastic.rendezvous import RendezvousHandler, RendezvousParameters, rendezvous_handler_registry
from torch.distributed.elastic.rendezvous.api import RendezvousConnectionError, RendezvousInfo
from torch.distributed.elastic.rendezvous.registry import get_rendezvous_handler

BACKEND = "llm-launch-c10d"
"""The name node_run registers this handler under and runs c10d rendezvous with."""
WRAPPED_BACKEND = "c10d"
"""The backend whose handler does the work."""
LOST_STORE_GRACE_S = 60
"""How long an agent keeps watching its ranks after the store is gone: enough for ranks that lost their peers to
end on their own (a collective's error, or the hang watchdog), within torch's default 60 s store read timeout."""


class LostStoreTolerantRendezvous(RendezvousHandler):
    """torch's c10d handler, except that `num_nodes_waiting` answers 0 for a while once the store has gone."""

    def __init__(self, handler: RendezvousHandler, grace_s: float):
        self.handler, self.grace_s = handler, grace_s
        self.store_lost_at: float | None = None

    def num_nodes_waiting(self) -> int:
        try:
            waiting = self.handler.num_nodes_waiting()
        except RendezvousConnectionError:
            now = time.monotonic()
            if self.store_lost_at is None:
                self.store_lost_at = now
                print(f"node_run: the rendezvous store is gone (the node that served it has ended); watching this "
                      f"node's ranks for up to {self.grace_s:g} s more", file=sys.stderr, flush=True)
            if now - self.store_lost_at > self.grace_s:
                raise
            return 0
        self.store_lost_at = None
        return waiting

    def get_backend(self) -> str:
        return BACKEND

    @property
    def use_agent_store(self) -> bool:
        return self.handler.use_agent_store

    def next_rendezvous(self) -> RendezvousInfo:
        return self.handler.next_rendezvous()

    def is_closed(self) -> bool:
        return self.handler.is_closed()

    def set_closed(self) -> None:
        self.handler.set_closed()

    def get_run_id(self) -> str:
        return self.handler.get_run_id()

    def shutdown(self) -> bool:
        return self.handler.shutdown()


def create_handler(params: RendezvousParameters) -> LostStoreTolerantRendezvous:
    grace_s = params.get_as_int("lost_store_grace", LOST_STORE_GRACE_S)
    wrapped = RendezvousParameters(WRAPPED_BACKEND, params.endpoint, params.run_id, params.min_nodes,
                                   params.max_nodes, params.local_addr, **params.config)
    return LostStoreTolerantRendezvous(get_rendezvous_handler(wrapped), grace_s)


def register() -> None:
    """Make BACKEND available to torchrun in this process (idempotent)."""
    rendezvous_handler_registry.register(BACKEND, create_handler)
