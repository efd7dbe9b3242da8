"""The node wrapper (launcher/container/node_run.py): a node whose ranks the watchdog ended exits 75 although its
torchrun exits 1; any other exit passes through; signals reach the command. The watchdog's side (train/watchdog.py
mark_hang) runs for real in container/test_pods_hang.py."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from llm_launch.launcher.container.node_run import HANG_MARKER_ENV, NODE_RUN_MODULE, run
from llm_launch.launcher.progress import HANG_EXIT_CODE


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


HUNG_RANK = ("import os, pathlib, subprocess, sys\n"
             # a rank ended by the watchdog (it touches the marker, then exits 75) under a launcher that exits 1
             f"rank = subprocess.run([sys.executable, '-c', \"import os, pathlib; pathlib.Path(os.environ['{HANG_MARKER_ENV}'])"
             ".touch(); os._exit(75)\"])\n"
             "sys.exit(1 if rank.returncode else 0)\n")


def test_a_hang_on_this_node_ends_it_with_75_though_its_launcher_exits_1(capfd):
    assert run(_python(HUNG_RANK)) == HANG_EXIT_CODE
    assert "the training watchdog ended a hung step on this node" in capfd.readouterr().err


def test_other_exits_pass_through_and_every_run_gets_a_fresh_marker():
    assert run(_python("import sys; sys.exit(1)")) == 1
    assert run(_python("import sys; sys.exit(0)")) == 0
    touch = f"import os, pathlib, sys; pathlib.Path(os.environ['{HANG_MARKER_ENV}']).touch(); sys.exit(0)"
    assert run(_python(touch)) == 0  # torchrun succeeded (a restart cured the hang): success
    left = f"import os, pathlib, sys; sys.exit(2 if pathlib.Path(os.environ['{HANG_MARKER_ENV}']).exists() else 3)"
    assert run(_python(left)) == 3  # nothing left over from the run before


def test_sigterm_reaches_the_command():
    wrapper = subprocess.Popen([sys.executable, "-m", NODE_RUN_MODULE, *_python(
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(42))\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
    assert wrapper.stdout.readline().strip() == "ready"
    started = time.monotonic()
    wrapper.send_signal(signal.SIGTERM)
    assert wrapper.wait(timeout=30) == 42 and time.monotonic() - started < 30
