"""llm_launch.train.node_run: torchrun that ends as its ranks end (issue 23). Real torchrun agents and ranks on CPU:
a rank's one-line error (exit 2) ends the node with 2 and no torchrun traceback, and a node stopped with SIGTERM
lets its ranks finish (here: print their last line) and exits 128 + 15 without the SignalException traceback.
Two nodes of an elastic (c10d) job as two agents here: the node whose ranks end later than the one that served the
rendezvous store still ends with its ranks' code (train/rendezvous.py), up to the grace."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ports import free_port

pytestmark = pytest.mark.system

FAILING_RANK = """
import os, sys, time
if os.environ["RANK"] == "1":
    print("train.cpt: nodes see different data; one line", flush=True)
    sys.exit(2)
time.sleep(60)
"""
STOPPING_RANK = """
import os, pathlib, signal, sys, time
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
pathlib.Path(sys.argv[1], os.environ["RANK"]).touch()
while not stop:
    time.sleep(0.05)
time.sleep(0.5)  # the step in flight and the save
print(f"rank {os.environ['RANK']}: stopped by SIGTERM; checkpoint saved", flush=True)
"""


def node_run(script: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "llm_launch.train.node_run", "--standalone", "--nproc_per_node=2",
                             str(script), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_a_rank_failing_with_one_line_ends_the_node_with_its_code_and_no_traceback(tmp_path):
    script = tmp_path / "rank.py"
    script.write_text(FAILING_RANK)
    proc = node_run(script)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2, out
    assert "train.cpt: nodes see different data; one line" in out
    assert "Traceback" not in out and "ChildFailedError" not in out, out


def test_a_node_stopped_by_sigterm_ends_with_the_ranks_last_line(tmp_path):
    script = tmp_path / "rank.py"
    script.write_text(STOPPING_RANK)
    proc = node_run(script, str(tmp_path))
    deadline = time.monotonic() + 60
    while not all((tmp_path / r).exists() for r in ("0", "1")):
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()[0]
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert "Traceback" not in out and "SignalException" not in out, out
    assert out.strip().splitlines()[-1].endswith("stopped by SIGTERM; checkpoint saved"), out


HANG_EXIT_CODE = 75
ENDING_RANK = """
import os, sys, time
time.sleep(float(os.environ["RANK_ENDS_AFTER_S"]))
sys.exit(75)
"""


def elastic_node(script: Path, port: int, ends_after_s: float, *rdzv_conf: str) -> subprocess.Popen:
    """One node of a two-node elastic job (c10d rendezvous at 127.0.0.1:port), one rank that exits 75 after a delay."""
    conf = ["--rdzv-conf=" + ",".join(rdzv_conf)] if rdzv_conf else []
    return subprocess.Popen([sys.executable, "-m", "llm_launch.train.node_run", "--nnodes=2", "--nproc_per_node=1",
                             "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=lost-store",
                             "--max-restarts=0", *conf, str(script)],
                            env={**os.environ, "RANK_ENDS_AFTER_S": str(ends_after_s)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def serving(port: int, proc: subprocess.Popen) -> None:
    """Wait until the first agent serves the rendezvous store, so that it, not the second, hosts it."""
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)


@pytest.mark.parametrize(("later_rank_s", "grace", "later_node_code"), [
    (4.0, (), HANG_EXIT_CODE),  # ends within the grace: its own code
    (600.0, ("lost_store_grace=3",), 1),  # never ends on its own: torch's error past the grace, in one line
], ids=["within-grace", "past-grace"])
def test_a_node_outliving_the_rendezvous_host_ends_with_its_ranks_code(tmp_path, later_rank_s, grace, later_node_code):
    script = tmp_path / "rank.py"
    script.write_text(ENDING_RANK)
    port = free_port()
    host = elastic_node(script, port, 1.0, *grace)
    serving(port, host)
    other = elastic_node(script, port, later_rank_s, *grace)
    host_out, _ = host.communicate(timeout=120)
    start = time.monotonic()
    other_out, _ = other.communicate(timeout=120)
    assert host.returncode == HANG_EXIT_CODE, host_out
    assert other.returncode == later_node_code, other_out
    assert "the rendezvous store is gone" in other_out, other_out
    assert "Traceback" not in other_out, other_out
    if later_node_code == 1:
        assert time.monotonic() - start < 30, other_out
        assert other_out.strip().splitlines()[-1].startswith("node_run: "), other_out
