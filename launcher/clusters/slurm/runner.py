"""Slurm: sbatch, squeue/scontrol/sacct (launcher/clusters/slurm/state.py), the batch log and scancel."""

from __future__ import annotations

import shutil
from pathlib import Path

from llm_launch.launcher.clusters.base import RunnerError
from llm_launch.launcher.clusters.slurm.render import LOG_PATTERN, SCRIPT_FILE
from llm_launch.launcher.clusters.slurm.state import JobState, job_state
from llm_launch.launcher.clusters.tools import require_tool, run_tool
from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.jobfile import COMPLETE_MARKER, JOB_FILE, LATEST, read_job
from llm_launch.launcher.progress import PROGRESS_FILE, read_progress_file, status_line

SLURM_HINT = "run llm-launch on a login node of the Slurm cluster (HyperPod or ParallelCluster)"
LOG_TAIL_LINES = 200


def submit(job: JobConfig, out_dir: Path) -> dict:
    sbatch = require_tool("sbatch", SLURM_HINT)
    output = run_tool([sbatch, "--parsable", f"--output={out_dir / LOG_PATTERN}", str(out_dir / SCRIPT_FILE)],
                      "sbatch")
    job_id = output.strip().split(";")[0]
    if not job_id.isdigit():
        raise RunnerError(f"sbatch printed {output.strip()!r} instead of a job id")
    print(f"llm-launch: submitted Slurm job {job_id}; log in {out_dir / LOG_PATTERN.replace('%j', job_id)}")
    return {"job_id": job_id, "log": str(out_dir / LOG_PATTERN.replace("%j", job_id))}


def _state(job_id: str) -> JobState | None:
    require_tool("squeue", SLURM_HINT)
    return job_state(job_id, {name: shutil.which(name) for name in ("squeue", "scontrol", "sacct")})


def status(record: dict, out_dir: Path) -> None:
    """The job's progress (step / max_steps, pace, ETA, goodput) from its progress.json, then STATE (reason) from
    squeue -t all, scontrol or sacct; after Slurm forgot the job, from output_dir."""
    job_id = record["job_id"]
    progress = read_progress_file(out_dir / PROGRESS_FILE)  # the job's output_dir, on the cluster's shared disk
    if progress is not None:  # first: the job's state stays the last line
        print(f"{job_id}: {status_line(progress)}")
    found = _state(job_id)
    if found:
        ended_early = found.ended and found.state != "COMPLETED"
        print(f"{job_id}: {found.describe()}{_resume_hint(out_dir) if ended_early else ''}")
    elif (out_dir / COMPLETE_MARKER).exists():
        print(f"{job_id}: COMPLETED (no longer known to Slurm; {out_dir / COMPLETE_MARKER} says the run finished)")
    else:
        print(f"{job_id}: UNKNOWN (no longer known to Slurm, whose accounting (sacct) does not keep it, and "
              f"{out_dir} has no {COMPLETE_MARKER} marker: the job did not finish; see action=logs)")


def _resume_hint(out_dir: Path) -> str:
    """Where a job that ended before its last step left its newest checkpoint (time limit, scancel, a failure),
    read from the `latest` pointer the trainer writes; '' when there is none or it is not on this machine."""
    try:
        checkpoints = read_job(out_dir / JOB_FILE).training.checkpoint.dir
    except (OSError, ValueError, KeyError):  # no job.yaml here, or one this version cannot read: no hint, not an error
        return ""
    if "://" in checkpoints:
        return ""
    pointer = Path(checkpoints) / LATEST
    try:
        newest = pointer.read_text(encoding="utf-8").strip()
    except OSError:
        return ""
    return f"; {Path(checkpoints) / newest} holds its newest checkpoint: submit the same command again to resume"


def logs(record: dict, out_dir: Path) -> None:
    path = Path(record["log"])
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        raise RunnerError(f"{path} does not exist yet; the job may still be pending (action=status)") from None
    print("\n".join(lines[-LOG_TAIL_LINES:]))


def stop(record: dict, out_dir: Path) -> None:
    """scancel, unless the job has already ended (scancel says nothing then)."""
    job_id = record["job_id"]
    progress = read_progress_file(out_dir / PROGRESS_FILE)  # the job's output_dir, on the cluster's shared disk
    if progress is not None:  # first: the job's state stays the last line
        print(f"{job_id}: {status_line(progress)}")
    found = _state(job_id)
    if found is None or found.ended:
        known = found.describe() if found else "no longer known to Slurm"
        print(f"llm-launch: Slurm job {job_id} had already ended ({known}); nothing to stop")
        return
    run_tool([require_tool("scancel", SLURM_HINT), job_id], "scancel")
    if found.state == "PENDING":  # never started: no process to signal, nothing trained, no checkpoint
        print(f"llm-launch: cancelled Slurm job {job_id} (was {found.describe()}); it had not started, so nothing "
              "was trained")
        return
    print(f"llm-launch: cancelled Slurm job {job_id} (was {found.state}); training saves a checkpoint on the "
          "SIGTERM it receives if it can within the cluster's KillWait")
