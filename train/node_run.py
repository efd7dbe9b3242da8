"""torchrun for one node of a cluster job, ending as its ranks end: python -m llm_launch.train.node_run <torchrun args>.

torchrun (torch.distributed.run) ends every failed run with exit code 1 and a traceback of ChildFailedError with its
error summary, and a stop (SIGTERM, Ctrl-C) with a SignalException traceback, after the ranks have printed their own
one line. Here torchrun's own `run` runs the node (same arguments, same rendezvous, same shutdown of the ranks:
https://github.com/pytorch/pytorch/blob/main/torch/distributed/run.py), and only its end differs:

- a rank that failed: the exit code of the rank that exited first on its own (a one-line error exits 2, a hang 75),
  not the ranks torchrun then stopped with a signal (torch.distributed.elastic.multiprocessing.errors.ChildFailedError
  keeps every failed rank's exit code and time);
- torchrun stopped by a signal after passing it on to the ranks, which finish their step and save a checkpoint:
  128 + the signal's number, as a shell reports a process a signal ended;

in both cases without a traceback, so the ranks' own last line stays the log's last line.

A c10d rendezvous runs as train/rendezvous.py's handler: an agent that finds the rendezvous store gone (the node
that served it ended first) goes on watching its ranks for a while, so the node still ends with their code.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

from llm_launch.train import rendezvous
from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.elastic.rendezvous import RendezvousError
from torch.distributed.run import parse_args, run

SIGNAL_EXIT_BASE = 128
"""A process ended by signal N exits 128 + N, as POSIX shells report it."""


def node_exit_code(failure: ChildFailedError) -> int:
    """The exit code of the rank that failed first on its own, else 128 + the signal that ended the first rank."""
    failures = sorted(failure.failures.items(), key=lambda item: (item[1].timestamp, item[0]))
    own = [f.exitcode for _, f in failures if f.exitcode > 0]
    if own:
        return own[0]
    code = failures[0][1].exitcode
    return SIGNAL_EXIT_BASE - code if code < 0 else 1


def leave(code: int) -> NoReturn:
    """End the agent at once: its ranks have all exited (torchrun waited for them), so nothing of the job is left to
    save, and the interpreter's teardown of the agent's rendezvous store and threads took seconds on a loaded node,
    time a stopped job spends within Slurm's KillWait."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.rdzv_backend == rendezvous.WRAPPED_BACKEND:
        rendezvous.register()
        args.rdzv_backend = rendezvous.BACKEND
    try:
        run(args)
    except ChildFailedError as exc:
        leave(node_exit_code(exc))
    except SignalException as exc:
        leave(SIGNAL_EXIT_BASE + int(exc.sigval))
    except RendezvousError as exc:  # torchrun's exit code 1, in one line; the cause holds the store's own message
        cause = f" ({type(exc.__cause__).__name__}: {exc.__cause__})" if exc.__cause__ else ""
        print(f"node_run: {type(exc).__name__}: {exc}{cause}".replace("\n", " "), file=sys.stderr)
        leave(1)


if __name__ == "__main__":
    main()
