"""Hang and straggler watchdog (training.watchdog): every rank reports its progress; a hung step ends the job with
every rank's stack in the log, one line naming the step and the ranks that never arrived, and exit code 75.

Progress goes through torchrun's key-value store (the process group's TCPStore): a rank sets
`arrived/<rank>` to the step whose end-of-step collective (the loss all-reduce) it is entering. A thread on every
rank watches the time since the current step started. When a step runs past the timeout (training.watchdog.
hang_timeout_s, or hang_multiple x the median step time and at least hang_floor_s; armed once the run's first
step has finished; evaluation and checkpoints are not watched), or another rank has already declared the hang:
- the rank writes its Python stacks, every thread's, to stderr (faulthandler, which the job's log collects) and,
  on NCCL, the flight recorder's trace to <output_dir>/hang/flight_recorder_rank<R>.pkl
  (https://pytorch.org/docs/stable/torch_nccl_flight_recorder.html; TORCH_NCCL_TRACE_BUFFER_SIZE must be set);
- the first rank to declare it waits (up to DUMP_WAIT_S) for every rank's dump, then prints one line:
  `hang: step S did not finish within T s; ranks [..] did not arrive at its end-of-step collective ...` and writes
  <output_dir>/hang/hang.json;
- every rank then exits with HANG_EXIT_CODE, without waiting for its stuck main thread; a main thread that fails
  once its watchdog has taken up the hang (the first ranks to exit close their connections: gloo's "Connection
  closed by peer") leaves the exit to the watchdog (end_with_hang), so every rank still ends with that code.
A rank whose main thread holds the interpreter lock in native code cannot run its watchdog; the other ranks still
declare the hang and name it (it never arrived), and exit, which torchrun turns into the end of every rank.

Stragglers: each rank's time from the start of a step to its arrival at the end-of-step collective travels with
the loss (llm_launch.train.backend.StepResult.rank_times). A rank slower than straggler_factor x the (lower) median
of the ranks for straggler_steps steps in a row is named once in the log and in that step's metrics
(straggler_ranks). Where gradients are synchronised during backward (DDP, FSDP), ranks wait for the slowest
there, so what separates them is the work before the first and after the last such wait.
"""

from __future__ import annotations

import faulthandler
import json
import os
import statistics
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import NoReturn

import torch.distributed as dist
from llm_launch.launcher.progress import HANG_EXIT_CODE, HANG_RECORD

HANG_DIR = str(Path(HANG_RECORD).parent)
DUMP_WAIT_S = 20.0
"""How long the declaring rank waits for the other ranks' stack dumps before it prints the line."""
REPORT_WAIT_S = 5.0
"""How much longer than DUMP_WAIT_S the other ranks wait for that line before they exit."""
STEP_HISTORY = 50
"""Step times kept for the median behind the automatic timeout."""
WARM_STEPS = 1
"""Steps a run finishes before the watchdog is armed (the first includes warm-up and compilation)."""


def timeout_for(cfg, step_times: list[float]) -> float:
    """The hang timeout in seconds: the configured one, else hang_multiple x the median step time (at least the floor)."""
    if cfg.hang_timeout_s is not None:
        return float(cfg.hang_timeout_s)
    median = statistics.median(step_times) if step_times else 0.0
    return max(cfg.hang_floor_s, cfg.hang_multiple * median)


class Stragglers:
    """Names ranks slower than the median by a factor for several consecutive steps."""

    def __init__(self, factor: float, steps: int):
        self.factor, self.steps = factor, steps
        self.slow_for: dict[int, int] = {}
        self.named: set[int] = set()

    def add(self, rank_times: list[float]) -> list[int]:
        """One step's per-rank times; returns the ranks named as stragglers at this step (each once per spell)."""
        median = statistics.median_low(rank_times)  # of two ranks, the faster
        newly = []
        for rank, seconds in enumerate(rank_times):
            if median > 0 and seconds > self.factor * median:
                self.slow_for[rank] = self.slow_for.get(rank, 0) + 1
                if self.slow_for[rank] >= self.steps and rank not in self.named:
                    self.named.add(rank)
                    newly.append(rank)
            else:
                self.slow_for.pop(rank, None)
                self.named.discard(rank)
        return newly


_hang_taken_up = threading.Event()
"""Set once this rank's watchdog has declared a hang or seen another rank's declaration."""


def hang_taken_up() -> bool:
    """Whether this rank's watchdog is ending the process for a hang."""
    return _hang_taken_up.is_set()


def end_with_hang() -> NoReturn:
    """The main thread failed after the watchdog took up a hang: its failure is the hang's consequence. Wait for the
    watchdog to finish its dump and report, which exits with HANG_EXIT_CODE, and exit so if it has not by then."""
    time.sleep(DUMP_WAIT_S + REPORT_WAIT_S + 5)
    os._exit(HANG_EXIT_CODE)


STOP_WAIT_S = 30.0
"""How long stop() waits for the watch thread (it wakes every poll_s; a store call may take longer)."""


class Watchdog:
    """One rank's progress reports and hang watch (start() after the process group exists)."""

    def __init__(self, cfg, *, rank: int, world_size: int, out_dir: Path, poll_s: float = 1.0):
        self.cfg, self.rank, self.world_size = cfg, rank, world_size
        self.out_dir, self.poll_s, self.nccl = out_dir, poll_s, False
        self.step_times: deque[float] = deque(maxlen=STEP_HISTORY)
        self.finished = 0
        self.current: int | None = None
        self.started_at = 0.0
        self.store = None
        self.prefix = store_prefix(os.environ)
        self.stragglers = Stragglers(cfg.straggler_factor, cfg.straggler_steps)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if not self.cfg.enabled or not dist.is_initialized():
            return
        self.store = dist.distributed_c10d._get_default_store()
        self.nccl = dist.get_backend() == "nccl"
        self._thread = threading.Thread(target=self._watch, name="llm-launch-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the watch and wait for its thread, before the process group and its store go away.

        A daemon thread still inside a store call (native code, interpreter lock released) when the interpreter
        exits is ended by a forced unwind, which aborts the process ("terminate called without an active
        exception", exit -6): a rank that had finished its work would fail the job."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=STOP_WAIT_S)
            self._thread = None

    # --- the training loop's reports -------------------------------------------------------------------------
    def step_started(self, step: int) -> None:
        with self._lock:
            self.current, self.started_at = step, time.monotonic()

    def arrived(self, step: int) -> None:
        """This rank enters step's end-of-step collective."""
        if self.store is not None:
            self.store.set(f"{self.prefix}arrived/{self.rank}", str(step))

    def step_finished(self, step: int, seconds: float) -> None:
        with self._lock:
            self.current = None
            self.finished += 1
            self.step_times.append(seconds)

    def timeout_s(self) -> float:
        return timeout_for(self.cfg, list(self.step_times))

    # --- the watch -------------------------------------------------------------------------------------------
    def _watch(self) -> None:
        declared = f"{self.prefix}declared"
        while not self._stopping.wait(self.poll_s):
            with self._lock:
                step, started, armed = self.current, self.started_at, self.finished >= WARM_STEPS
            try:
                if self.store.check([declared]):
                    self._on_hang(int(self.store.get(declared).decode()), declaring=False)
                if armed and step is not None and time.monotonic() - started > self.timeout_s():
                    first = self.store.add(f"{self.prefix}declarers", 1) == 1
                    if first:
                        self.store.set(declared, str(step))
                    self._on_hang(step, declaring=first)
            except Exception:  # noqa: BLE001 - the store is gone (torchrun ended the job): nothing left to watch
                return

    def _arrivals(self) -> dict[int, int]:
        arrivals = {}
        for rank in range(self.world_size):
            key = f"{self.prefix}arrived/{rank}"
            arrivals[rank] = int(self.store.get(key).decode()) if self.store.check([key]) else 0
        return arrivals

    def _on_hang(self, step: int, *, declaring: bool) -> None:
        _hang_taken_up.set()
        timeout = self.timeout_s()
        print(f"watchdog: rank {self.rank}: step {step} did not finish within {timeout:.0f} s; Python stacks of "
              f"rank {self.rank}:", file=sys.stderr, flush=True)
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        sys.stderr.flush()
        self._dump_flight_recorder()
        try:
            self.store.set(f"{self.prefix}dumped/{self.rank}", "1")
            if declaring:
                deadline = time.monotonic() + DUMP_WAIT_S
                dumped = [f"{self.prefix}dumped/{r}" for r in range(self.world_size)]
                while time.monotonic() < deadline and not self.store.check(dumped):
                    time.sleep(0.2)
                self._report(step, timeout)
                self.store.set(f"{self.prefix}reported", "1")
            else:
                deadline = time.monotonic() + DUMP_WAIT_S + REPORT_WAIT_S
                while time.monotonic() < deadline and not self.store.check([f"{self.prefix}reported"]):
                    time.sleep(0.2)
        except Exception:  # noqa: BLE001 - the store left with the rank that hosted it (a job whose workers host their
            # own store: elastic); the hang stands, so this rank still ends with the hang's code
            print(f"watchdog: rank {self.rank}: the job's store is gone; exiting with code {HANG_EXIT_CODE}",
                  file=sys.stderr, flush=True)
        os._exit(HANG_EXIT_CODE)

    def _report(self, step: int, timeout: float) -> None:
        arrivals = self._arrivals()
        missing = [rank for rank, arrived in arrivals.items() if arrived < step]
        if missing:
            who = f"ranks {missing} did not arrive at its end-of-step collective (the others wait inside it)"
        else:
            who = "every rank entered its end-of-step collective and none left it (a hung collective or network)"
        print(f"hang: step {step} did not finish within {timeout:.0f} s; {who}; every rank's Python stack is in the "
              f"log above; exiting with code {HANG_EXIT_CODE}", file=sys.stderr, flush=True)
        folder = self.out_dir / HANG_DIR
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (self.out_dir / HANG_RECORD).write_text(json.dumps({"step": step, "timeout_s": timeout, "ranks_missing": missing,
                                                          "arrived": arrivals}) + "\n", encoding="utf-8")
        except OSError:
            pass

    def _dump_flight_recorder(self) -> None:
        if not self.nccl:
            return
        try:
            import torch

            trace = torch._C._distributed_c10d._dump_nccl_trace()
            folder = self.out_dir / HANG_DIR
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"flight_recorder_rank{self.rank}.pkl").write_bytes(trace)
        except Exception as exc:  # noqa: BLE001 - a missing recorder must not keep the stacks from the log
            print(f"watchdog: rank {self.rank}: no NCCL flight recorder trace ({type(exc).__name__}: {exc})",
                  file=sys.stderr, flush=True)

    def straggler_ranks(self, rank_times: list[float] | None) -> list[int]:
        """The ranks named as stragglers at this step (logged by the caller)."""
        return self.stragglers.add(rank_times) if rank_times else []


def store_prefix(env) -> str:
    """Where this run's watchdog keys live in the workers' store. torchrun's restart count keeps one round's keys from
    the next where the store outlives the rounds (torchrun lends its own), but each agent counts its own restarts, so
    a node that joins an elastic job later counts differently from the rest
    (https://github.com/pytorch/pytorch/issues/135712). Elastic jobs have a fresh store every round
    (TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1, launcher/environment.py), so there the count is left out and every rank
    agrees on the prefix."""
    run = env.get("TORCHELASTIC_RUN_ID", "run")
    if env.get("TORCH_DISABLE_SHARE_RDZV_TCP_STORE") == "1":
        return f"llm_launch/watchdog/{run}/"
    return f"llm_launch/watchdog/{run}/{env.get('TORCHELASTIC_RESTART_COUNT', '0')}/"
