"""An output folder holding another task's job is never reused by accident."""

import pytest


@pytest.mark.system
def test_eval_into_a_training_runs_folder_is_refused(cli, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "job.yaml").write_text("training:\n  task: cpt\n")
    result = cli("task=eval")
    assert result.returncode == 2
    assert "output_dir:" in result.stderr and "task=cpt job" in result.stderr
    assert cli("task=cpt").returncode == 0  # the same task may resume or extend its run



HEAD_1 = """
import sys
from llm_launch.launcher.cli import main

class Head1:
    \"\"\"stdout after `| head -1` has read its line and gone: the first write lands, every later one fails.\"\"\"
    def __init__(self):
        self.writes = 0
    def write(self, text):
        self.writes += 1
        if self.writes > 1:
            raise BrokenPipeError(32, "Broken pipe")
        return len(text)
    def flush(self):
        pass
    def isatty(self):
        return False
    def fileno(self):
        return 1

sys.stdout = Head1()
sys.argv = ["llm-launch", *sys.argv[1:]]
main()
"""


def test_a_reader_that_stops_reading_the_plan_is_not_blamed_on_output_dir(tmp_path):
    """`llm-launch action=plan | head -1`: the closed pipe ends the run quietly (exit 1, as Python's SIGPIPE
    note advises), not as an output_dir problem after Hydra's error line."""
    import subprocess
    import sys

    from llm_launch.launcher import PROJECT_ROOT

    done = subprocess.run([sys.executable, "-c", HEAD_1, "action=plan", f"output_dir={tmp_path / 'out'}"],
                          capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert done.returncode == 1, done.stderr
    assert done.stderr == ""


LATE_CHECK = """
import sys
import llm_launch.launcher.clusters.local as local
from llm_launch.launcher.cli import main

local.in_use = lambda folder, what: None  # this run checked the folder just before the winner took its lock
sys.argv = ["llm-launch", *sys.argv[1:]]
main()
"""


@pytest.mark.system
def test_the_run_refused_at_the_same_instant_leaves_the_winners_files_untouched(tmp_path):
    """Two runs started at the same instant both pass the plan-time check; the one that does not get the lock
    must not have written anything into the folder (plan.json, job.yaml, launch.sh stay the winner's)."""
    import os
    import subprocess
    import sys

    from llm_launch.launcher import PROJECT_ROOT
    from llm_launch.launcher.run_lock import RunLock

    out = tmp_path / "out"
    winner = subprocess.run([sys.executable, "-m", "llm_launch.launcher.cli", "action=render", f"output_dir={out}",
                             "training.max_steps=7"], capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert winner.returncode == 0, winner.stderr
    files = {name: ((out / name).read_bytes(), os.stat(out / name).st_mtime_ns)
             for name in ("plan.json", "job.yaml", "launch.sh")}
    running = RunLock(out, "output_dir").acquire()  # the winner, training
    try:
        loser = subprocess.run([sys.executable, "-c", LATE_CHECK, f"output_dir={out}", "training.max_steps=9"],
                               capture_output=True, text=True, cwd=PROJECT_ROOT)
    finally:
        running.release()
    assert loser.returncode == 2, loser.stdout[-2000:] + loser.stderr[-2000:]
    assert loser.stderr.strip().splitlines() == [
        f"llm-launch: {out} is in use by a running job (pid {os.getpid()} on {os.uname().nodename}, since "
        f"{loser.stderr.split(', since ')[1].split(')')[0]}); wait for it to finish or stop it, or set output_dir to "
        "another folder"]
    assert {name: ((out / name).read_bytes(), os.stat(out / name).st_mtime_ns) for name in files} == files
    assert "max_steps: 7" in (out / "job.yaml").read_text()


@pytest.mark.system
def test_two_runs_started_at_the_same_instant_one_trains_and_the_files_are_its_own(tmp_path, command):
    """The real race, repeated: two llm-launch processes on one folder at once, asking for different max_steps. One is
    refused (exit 2, one line); job.yaml and plan.json are those of the one that runs."""
    import signal
    import subprocess
    import time

    for attempt in range(2):
        out = tmp_path / f"out{attempt}"
        procs = {steps: subprocess.Popen(command(out, f"training.max_steps={steps}"), stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True) for steps in (300, 400)}
        refused = None
        deadline = time.monotonic() + 300
        while refused is None and time.monotonic() < deadline:
            refused = next((s for s, p in procs.items() if p.poll() is not None), None)
            time.sleep(0.1)
        assert refused is not None, "neither run was refused"
        (winner,) = [s for s in procs if s != refused]
        loser = procs[refused]
        _, err = loser.communicate(timeout=60)
        assert loser.returncode == 2, err[-2000:]
        assert "is in use by a running job" in err and "Traceback" not in err
        while not (out / "train.log").exists() and procs[winner].poll() is None:
            time.sleep(0.1)
        assert f"max_steps: {winner}" in (out / "job.yaml").read_text()
        procs[winner].send_signal(signal.SIGTERM)
        procs[winner].communicate(timeout=240)
