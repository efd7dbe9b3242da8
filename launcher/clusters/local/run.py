"""Runs a rendered job on this machine with torchrun and judges it by its completion marker.

torchrun's exit code alone is not trusted: on gloo a finished run occasionally aborts
during interpreter shutdown. The training job writes COMPLETE (a JSON summary) as its very last
act; its presence is success.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from launcher.clusters.base import RunFailed
from launcher.clusters.local.render import torchrun_command, worker_threads
from launcher.config.schema import JobConfig
from launcher.jobfile import COMPLETE_MARKER
from launcher.plan import Plan

TRAIN_LOG = "train.log"
JOB_ERROR_LINE = re.compile(rb"^train\.\w+: ")
"""How an entrypoint reports a job it cannot run (train/entry.py): one line, its module name first."""


class LocalRunFailed(RunFailed):
    """The job ended without writing its completion marker."""


def read_marker(out_dir: Path) -> dict | None:
    """The completion summary of a finished run in out_dir, or None."""
    try:
        return json.loads((out_dir / COMPLETE_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _forward_stop_signals(proc: subprocess.Popen) -> list[int]:
    """Pass SIGTERM and SIGINT on to torchrun, which hands them to the ranks: they checkpoint and stop.
    Returns the list the received signal numbers are appended to."""
    received: list[int] = []

    def forward(signum, frame):
        received.append(signum)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    return received


def run_local(job: JobConfig, plan: Plan, out_dir: Path, job_yaml: Path) -> dict:
    """Run torchrun, tee its output to train.log, and return the completion summary."""
    done = read_marker(out_dir)
    if done and done.get("step") == job.training.max_steps:
        print(f"llm-launch: {out_dir} already holds a completed run of {done['step']} steps; nothing to do "
              "(set output_dir= or raise training.max_steps to train more)")
        return done
    marker = out_dir / COMPLETE_MARKER
    marker.unlink(missing_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(worker_threads(plan.ranks_per_node)), PYTHONUNBUFFERED="1")
    command = torchrun_command(job, plan, job_yaml)
    print(f"llm-launch: starting {plan.ranks_per_node} local processes; log in {out_dir / TRAIN_LOG}", flush=True)
    with open(out_dir / TRAIN_LOG, "ab") as log:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        stopped = _forward_stop_signals(proc)
        assert proc.stdout is not None
        job_error = None
        for line in proc.stdout:
            sys.stdout.buffer.write(line)
            sys.stdout.flush()
            log.write(line)
            if job_error is None and JOB_ERROR_LINE.match(line):
                job_error = line.decode("utf-8", "replace").strip()
        returncode = proc.wait()
    summary = read_marker(out_dir)
    if summary is None and stopped:
        raise LocalRunFailed(f"stopped by signal {stopped[0]}; the job saved a checkpoint if it could; run the same "
                             "command again to resume")
    if summary is None:
        cause = f": {job_error}" if job_error else f" (torchrun exit code {returncode})"
        raise LocalRunFailed(f"training did not complete{cause}; see {out_dir / TRAIN_LOG}")
    if returncode != 0:
        print(f"llm-launch: torchrun exited with {returncode} after the job wrote its completion marker "
              "(a known gloo shutdown abort); the run is complete", file=sys.stderr)
    return summary
