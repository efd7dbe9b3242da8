"""A rank whose main thread fails after its watchdog took up a hang still exits with the hang's code (75).

On a hang the first ranks to exit close their connections, and a rank still inside the collective fails there
(gloo: "Connection closed by peer") before its own watchdog exits: on a two-pod elastic job that rank's node ended
with 1, not 75. Here, in a process of its own, a real watchdog on a real TCPStore declares a hang of a two-rank job
whose other rank never reports (so it waits DUMP_WAIT_S for that rank's dump), and the job's main thread then
fails the way the collective does; the entrypoint (train/entry.py) runs it."""

from __future__ import annotations

import json
import subprocess
import sys

from composed_job import compose_job
from llm_launch.launcher.jobfile import write_job
from llm_launch.launcher.progress import HANG_EXIT_CODE

RANK = """
import sys, time
from pathlib import Path
import torch.distributed as dist
from llm_launch.launcher.config.resilience import WatchdogConfig
from llm_launch.train import watchdog
from llm_launch.train.entry import run_entrypoint

watchdog.DUMP_WAIT_S = 2.0  # the other rank's dump never comes


def runner(job, job_path, precompile):
    store = dist.TCPStore("127.0.0.1", 0, 1, is_master=True)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    dog = watchdog.Watchdog(WatchdogConfig(hang_timeout_s=0.2), rank=0, world_size=2, out_dir=Path(job.output_dir),
                            poll_s=0.05)
    dog.start()
    dog.step_started(1)
    dog.step_finished(1, 0.01)  # armed after its first step
    dog.step_started(2)
    dog.arrived(2)
    while not watchdog.hang_taken_up():
        time.sleep(0.01)
    raise RuntimeError("gloo/transport/tcp/pair.cc: Connection closed by peer")


run_entrypoint("cpt", ["--job", sys.argv[1]], job_runner=runner)
"""


def test_a_collective_failing_after_the_hang_was_taken_up_exits_75(tmp_path):
    job = compose_job([f"output_dir={tmp_path / 'out'}"], tmp_path / "out")
    write_job(job, tmp_path / "job.yaml")
    script = tmp_path / "rank.py"
    script.write_text(RANK)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "job.yaml")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == HANG_EXIT_CODE, proc.stdout + proc.stderr
    assert "hang: step 2 did not finish within 0 s; ranks [1] did not arrive" in proc.stderr, proc.stderr
    assert "Connection closed by peer" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert json.loads((tmp_path / "out" / "hang" / "hang.json").read_text())["ranks_missing"] == [1]
