"""Runs a rendered job on this machine with torchrun and judges it by its completion marker.

torchrun's exit code alone is not trusted: on gloo a finished run occasionally aborts
during interpreter shutdown. The training job writes COMPLETE (a JSON summary) as its very last
act; its presence is success.

The runner owns the job's processes: it holds the output folder's lock for the job's lifetime
(launcher/run_lock.py), starts torchrun in a process group of its own that dies with the runner
(PR_SET_PDEATHSIG; each rank does the same towards torchrun and watches the runner, train/lifeline.py),
and turns SIGTERM and Ctrl-C into the stop file every rank reads at each step boundary (launcher/stop.py), so
ranks running or not yet started checkpoint and stop while torchrun sees them finish normally (a signal to
torchrun makes it print a SignalException traceback). A second Ctrl-C kills the job at once. Whatever way
the runner ends, no rank outlives it.
A job that reports a problem of its input or state (one `train.<task>: ...` line, exit 2) ends the
command with that line; what the ranks print after it goes to train.log only.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from llm_launch.launcher.clusters.base import RunFailed, RunnerError
from llm_launch.launcher.clusters.local.render import torchrun_command, worker_threads
from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.environment import SAFE_PATH_ENVIRONMENT
from llm_launch.launcher.jobfile import COMPLETE_MARKER
from llm_launch.launcher.plan import Plan
from llm_launch.launcher.processes import child_pids, die_with_parent
from llm_launch.launcher.progress import HANG_EXIT_CODE, HANG_RECORD
from llm_launch.launcher.run_lock import HELD_BY_LAUNCHER_ENV, FolderInUse, RunLock, held_here
from llm_launch.launcher.stop import STOP_FILE, STOP_FILE_ENV, StopRecorder

TRAIN_LOG = "train.log"
JOB_ERROR_LINE = re.compile(rb"^train\.\w+: ")
"""How an entrypoint reports a job it cannot run (train/entry.py): one line, its module name first."""
LAUNCHER_PID_ENV = "LLM_LAUNCH_PID"
"""Tells the ranks which process to live and die with (train/lifeline.py)."""


class LocalRunFailed(RunFailed):
    """The job ended without writing its completion marker."""


class JobHung(LocalRunFailed):
    """The watchdog found a hung step (train/watchdog.py): every rank's stacks are in train.log."""

    exit_code = HANG_EXIT_CODE


class JobRefused(RunnerError):
    """The job stopped on a problem of its input or state, reported in one line (exit 2)."""


def read_marker(out_dir: Path) -> dict | None:
    """The completion summary of a finished run in out_dir, or None."""
    try:
        return json.loads((out_dir / COMPLETE_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


class JobProcesses:
    """torchrun and its ranks; the runner never signals a rank to stop (the stop file does, launcher/stop.py), it
    only kills them all when it must."""

    def __init__(self, command: list[str], env: dict[str, str]):
        runner = os.getpid()
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True, preexec_fn=lambda: die_with_parent(runner))

    def ranks(self) -> list[int]:
        return child_pids(self.proc.pid)

    def kill(self) -> None:
        """SIGKILL the ranks and torchrun's process group (nothing more is written)."""
        if self.proc.poll() is not None:
            return
        for pid in self.ranks():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def hold_output_dir(out_dir: Path) -> RunLock:
    """The output folder's lock, taken (RunnerError naming the holder when another run has it); the command takes
    it before it writes anything there (plan.json, job.yaml, launch.sh), so a refused run changes nothing."""
    try:
        lock = RunLock(out_dir, "output_dir").acquire()
    except FolderInUse as exc:
        raise RunnerError(str(exc)) from None
    if lock.stale_note():
        print(f"llm-launch: {lock.stale_note()}", flush=True)
    return lock


def run_local(job: JobConfig, plan: Plan, out_dir: Path, job_yaml: Path) -> dict:
    """Run torchrun, tee its output to train.log, and return the completion summary (under the output folder's
    lock: the command's, or taken here)."""
    if held_here(out_dir):
        return _run(job, plan, out_dir, job_yaml)
    with hold_output_dir(out_dir):
        return _run(job, plan, out_dir, job_yaml)


def _run(job: JobConfig, plan: Plan, out_dir: Path, job_yaml: Path) -> dict:
    done = read_marker(out_dir)
    if done and done.get("step") == job.training.max_steps:
        print(f"llm-launch: {out_dir} already holds a completed run of {done['step']} steps; nothing to do "
              "(set output_dir= or raise training.max_steps to train more)")
        return done
    marker = out_dir / COMPLETE_MARKER
    marker.unlink(missing_ok=True)
    (out_dir / HANG_RECORD).unlink(missing_ok=True)
    stop_file = out_dir / STOP_FILE
    env = dict(os.environ, OMP_NUM_THREADS=str(worker_threads(plan.ranks_per_node)), PYTHONUNBUFFERED="1",
               **SAFE_PATH_ENVIRONMENT)
    env.update({LAUNCHER_PID_ENV: str(os.getpid()), HELD_BY_LAUNCHER_ENV: str(out_dir.resolve()),
                STOP_FILE_ENV: str(stop_file.resolve())})
    command = torchrun_command(job, plan, job_yaml)
    started: list[JobProcesses] = []
    stops = StopRecorder(stop_file, kill=lambda: [p.kill() for p in started])
    try:
        if stops.received:
            raise LocalRunFailed(f"stopped by signal {stops.received[0]} before the job started; nothing was trained")
        print(f"llm-launch: starting {plan.ranks_per_node} local processes; log in {out_dir / TRAIN_LOG}", flush=True)
        with open(out_dir / TRAIN_LOG, "ab") as log:
            started.append(JobProcesses(command, env))  # ranks started from here on find the stop file at once
            try:
                job_error, returncode = _follow(started[0].proc, log)
            finally:
                started[0].kill()  # nothing outlives the runner, whatever ended it
    finally:
        stops.close()
    summary = read_marker(out_dir)
    if summary is None and job_error:
        raise JobRefused(job_error)
    if summary is None and (out_dir / HANG_RECORD).is_file():
        hang = json.loads((out_dir / HANG_RECORD).read_text(encoding="utf-8"))
        missing = f"ranks {hang['ranks_missing']} never arrived" if hang["ranks_missing"] else "every rank arrived"
        raise JobHung(f"step {hang['step']} hung ({missing}; no step finished within {hang['timeout_s']:.0f} s); "
                      f"every rank's stack is in {out_dir / TRAIN_LOG}; run the same command again to resume")
    if summary is None and stops.received:
        raise LocalRunFailed(f"stopped by signal {stops.received[0]}; {_saved(job)}; run the same command again to "
                             "resume")
    if summary is None:
        raise LocalRunFailed(f"training did not complete (torchrun exit code {returncode}); see {out_dir / TRAIN_LOG}")
    if returncode != 0:
        print(f"llm-launch: torchrun exited with {returncode} after the job wrote its completion marker "
              "(a known gloo shutdown abort); the run is complete", file=sys.stderr)
    return summary


def _saved(job: JobConfig) -> str:
    """What the stopped job left to resume from: the checkpoint `latest` names, or that there is none."""
    latest = Path(job.training.checkpoint.dir or "") / "latest"
    try:
        return f"its checkpoint is {latest.parent / latest.read_text(encoding='utf-8').strip()}"
    except OSError:
        return "no checkpoint was saved (no step was trained)"


def _follow(proc: subprocess.Popen, log) -> tuple[str | None, int]:
    """Echo and log the job's output until it ends; after a job error line, log only.

    Returns (the job error line without its train.<task> prefix, or None; torchrun's exit code).
    """
    assert proc.stdout is not None
    job_error = None
    for line in proc.stdout:
        log.write(line)
        if job_error is None and JOB_ERROR_LINE.match(line):
            job_error = line.decode("utf-8", "replace").strip().split(": ", 1)[1]
        if job_error is None:
            sys.stdout.buffer.write(line)
            sys.stdout.flush()
    return job_error, proc.wait()
