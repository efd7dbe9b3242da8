"""llm_launch.train.node_run: torchrun that ends as its ranks end (issue 23). Real torchrun agents and ranks on CPU:
a rank's one-line error (exit 2) ends the node with 2 and no torchrun traceback, and a node stopped with SIGTERM
lets its ranks finish (here: print their last line) and exits 128 + 15 without the SignalException traceback."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

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
