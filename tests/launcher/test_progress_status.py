"""action=status reports step / max_steps, the pace, an ETA and goodput from the job's own progress.json
(launcher/progress.py): here for a local run; tests/launcher/clusters hold SageMaker (moto) and Slurm (real)."""

from __future__ import annotations

import json
import subprocess
import sys

from llm_launch.launcher.clusters import manage
from llm_launch.launcher.progress import PROGRESS_FILE, Progress, read_progress, status_line

PROGRESS = Progress(max_steps=100, step=40, seconds_per_step=1.5, productive_s=50.0, checkpoint_s=4.0, eval_s=2.0,
                    wall_s=62.5, restarts=1, redone_steps=6, redone_s=9.0, median_step_s=1.25)


def test_the_status_line_has_step_pace_eta_and_goodput():
    assert PROGRESS.eta_s == 90.0 and PROGRESS.goodput == 0.8
    assert status_line(PROGRESS) == ("step 40/100 (40%), 1.50 s/step, ETA 1m30s; goodput 80% (training 0m50s, "
                                     "checkpoints 0m04s, evaluation 0m02s, 1 restart(s), 6 step(s) redone)")
    finished = Progress(max_steps=100, step=100, seconds_per_step=1.0, wall_s=10, productive_s=9, stragglers=[3])
    assert status_line(finished).startswith("step 100/100 (100%), 1.00 s/step, done; goodput 90% ")
    assert status_line(finished).endswith("; slow ranks: [3]")
    assert read_progress(json.dumps(PROGRESS.to_dict())) == PROGRESS
    assert read_progress("{not json") is None


def test_status_of_a_local_run_reads_its_progress(tmp_path, capsys):
    (tmp_path / PROGRESS_FILE).write_text(json.dumps(PROGRESS.to_dict()))
    manage("status", tmp_path)
    assert capsys.readouterr().out == f"{tmp_path}: not running; {status_line(PROGRESS)}\n"


def test_status_without_a_run_says_so_in_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "llm_launch.launcher.cli", f"output_dir={tmp_path}", "action=status"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == (f"llm-launch: no run has reported progress in {tmp_path} ({PROGRESS_FILE} is "
                                   "written from the first logged step); start one with action=submit")
