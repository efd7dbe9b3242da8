"""Render a composed job exactly as `llm-launch ... action=render` does, in-process."""

from __future__ import annotations

from pathlib import Path

from launcher.cli import render
from launcher.config.schema import JobConfig
from launcher.jobfile import JOB_FILE, write_job
from launcher.render.remote import remote_job
from launcher.validate import validate


def render_job(job: JobConfig, out_dir: Path | None = None) -> tuple[JobConfig, list[Path]]:
    """Validate (no problems allowed), then write job.yaml and the cluster's files; (remote job, files)."""
    findings, plan = validate(job)
    assert not findings.problems, [str(p) for p in findings.problems]
    out_dir = out_dir or Path(job.output_dir)
    if job.cluster.kind != "local":
        job = remote_job(job)
    job_yaml = write_job(job, out_dir / JOB_FILE)
    return job, [job_yaml, *render(job, plan, out_dir, job_yaml)]
