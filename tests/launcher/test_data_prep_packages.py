"""Pip packages of a prepare job are checked where the job runs: at plan time for local jobs, at job start
for remote ones (a laptop without datasketch must not refuse a Slurm prepare job).

datasketch, langdetect and pypdf are installed here, so their absence is simulated by making
importlib.util.find_spec report them missing.
"""

from __future__ import annotations

import importlib.util

import pytest
from llm_launch.dataprep import prepare
from llm_launch.launcher.jobfile import write_job
from llm_launch.launcher.validate import validate

HIDDEN = ("datasketch", "langdetect", "pypdf")
NEEDS_ALL = ("recipe=prepare_sample", "data_prep.filters.languages=[en]",
             "data_prep.sources.0.format=pdf")


@pytest.fixture
def packages_missing(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in HIDDEN else real(name, *a))


def package_fields(job) -> list[str]:
    findings, _ = validate(job)
    return sorted(p.field for p in findings.problems
                  if p.field in ("data_prep.dedup.near", "data_prep.filters.languages", "data_prep.sources[0].format"))


def test_a_local_job_is_refused_at_plan_time(job_for, packages_missing):
    assert package_fields(job_for(*NEEDS_ALL)) == [
        "data_prep.dedup.near", "data_prep.filters.languages", "data_prep.sources[0].format"]


@pytest.mark.parametrize("cluster", ["slurm", "eks", "sagemaker"])
def test_a_remote_job_is_not_refused_for_this_machines_packages(job_for, packages_missing, cluster):
    job = job_for(*NEEDS_ALL, f"cluster={cluster}", "instance=ml.p5.48xlarge")
    assert package_fields(job) == []


def test_the_job_refuses_to_start_where_they_are_missing(job_for, packages_missing, tmp_path, capsys):
    job_yaml = write_job(job_for(*NEEDS_ALL), tmp_path / "job.yaml")
    with pytest.raises(SystemExit) as stopped:
        prepare.main(["--job", str(job_yaml)])
    assert stopped.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("llm_launch.dataprep.prepare: data_prep.sources[0].format: reading pdf needs pypdf")
    assert "data_prep.filters.languages" in line and "data_prep.dedup.near: needs datasketch" in line
    assert not (tmp_path / "out" / "data").exists()
