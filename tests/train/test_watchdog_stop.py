"""The watchdog's thread ends before the process group does.

A daemon thread left inside a store call when the interpreter exits is ended by a forced unwind that aborts the
rank ("terminate called without an active exception", exit -6); on the real Slurm that turned a finished job into
a failed one. Trainer._finish stops the watchdog first; here a real one-rank gloo group and its TCPStore."""

from __future__ import annotations

import threading

import pytest
import torch.distributed as dist
from llm_launch.launcher.config.resilience import WatchdogConfig
from llm_launch.train.watchdog import Watchdog


@pytest.fixture
def group(monkeypatch):
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "0")
    store = dist.TCPStore("127.0.0.1", 0, 1, is_master=True)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_stop_ends_the_watch_thread_before_the_group_goes(group, tmp_path):
    watchdog = Watchdog(WatchdogConfig(), rank=0, world_size=1, out_dir=tmp_path, poll_s=0.05)
    watchdog.start()
    assert [t for t in threading.enumerate() if t.name == "llm-launch-watchdog"]
    watchdog.stop()
    assert not [t for t in threading.enumerate() if t.name == "llm-launch-watchdog"]


def test_stop_without_a_started_watch_does_nothing(tmp_path):
    Watchdog(WatchdogConfig(enabled=False), rank=0, world_size=1, out_dir=tmp_path).stop()
