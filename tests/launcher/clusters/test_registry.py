"""The cluster table: every shipped cluster config has a registered kind, and each kind plans and renders."""

from __future__ import annotations

import pytest
import yaml
from llm_launch.launcher import PROJECT_ROOT
from llm_launch.launcher.clusters import CLUSTERS
from llm_launch.launcher.config import schema

CLUSTER_CONFIGS = sorted((PROJECT_ROOT / "conf" / "cluster").glob("*.yaml"))


def test_every_shipped_cluster_config_names_a_registered_kind():
    kinds = {yaml.safe_load(path.read_text(encoding="utf-8"))["kind"] for path in CLUSTER_CONFIGS}
    assert kinds == set(CLUSTERS) == {str(kind) for kind in schema.ClusterKind}
    assert all(CLUSTERS[kind].kind == kind for kind in CLUSTERS)


@pytest.mark.parametrize("kind", sorted(CLUSTERS))
def test_each_kind_renders_its_files_next_to_job_yaml(kind, job_for, render_job, tmp_path):
    instance = "local_cpu" if CLUSTERS[kind].runs_here else "ml.p5.48xlarge"
    job, files = render_job(job_for("recipe=smoke_allreduce", f"cluster={kind}", f"instance={instance}"), tmp_path)
    assert files[0] == tmp_path / "job.yaml" and len(files) >= 2
    assert all(path.is_file() and path.parent == tmp_path for path in files)
    assert (job.output_dir == str(tmp_path / "out")) == (kind in ("local", "slurm"))


def test_an_unknown_kind_is_one_problem(cli):
    done = cli("cluster.kind=azure")
    assert done.returncode == 2
    assert "cluster.kind" in done.stderr and "azure" in done.stderr
    assert "Traceback" not in done.stderr
