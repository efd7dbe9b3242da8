"""Render a composed job exactly as `llm-launch ... action=render` does, in-process."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from llm_launch.launcher.clusters import cluster_of
from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.jobfile import JOB_FILE, write_job
from llm_launch.launcher.validate import validate


def _render_job(job: JobConfig, out_dir: Path | None = None) -> tuple[JobConfig, list[Path]]:
    findings, plan = validate(job)
    assert not findings.problems, [str(p) for p in findings.problems]
    out_dir = out_dir or Path(job.output_dir)
    cluster = cluster_of(job)
    job = cluster.container_job(job)
    job_yaml = write_job(job, out_dir / JOB_FILE)
    return job, [job_yaml, *cluster.render(job, plan, out_dir, job_yaml)]


@pytest.fixture
def render_job() -> Callable[..., tuple[JobConfig, list[Path]]]:
    """render_job(job, out_dir=None): validate (no problems allowed), then write job.yaml and the cluster's
    files; returns (the job as the cluster sees it, the files written)."""
    return _render_job
