"""Slurm: sbatch, squeue/sacct, the batch log and scancel."""

from __future__ import annotations

from pathlib import Path

from launcher.clusters.base import RunnerError
from launcher.clusters.slurm.render import LOG_PATTERN, SCRIPT_FILE
from launcher.clusters.tools import require_tool, run_tool
from launcher.config.schema import JobConfig

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


def status(record: dict, out_dir: Path) -> None:
    job_id = record["job_id"]
    state = run_tool([require_tool("squeue", SLURM_HINT), "-h", "-j", job_id, "-o", "%T"], "squeue").strip()
    if not state:
        state = run_tool([require_tool("sacct", SLURM_HINT), "-n", "-X", "-P", "-j", job_id, "-o", "State"],
                         "sacct").strip()
    print(f"{job_id}: {state or 'UNKNOWN'}")


def logs(record: dict, out_dir: Path) -> None:
    path = Path(record["log"])
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        raise RunnerError(f"{path} does not exist yet; the job may still be pending (action=status)") from None
    print("\n".join(lines[-LOG_TAIL_LINES:]))


def stop(record: dict, out_dir: Path) -> None:
    run_tool([require_tool("scancel", SLURM_HINT), record["job_id"]], "scancel")
    print(f"llm-launch: cancelled Slurm job {record['job_id']}")
