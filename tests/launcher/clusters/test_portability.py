"""Recipes travel between clusters: every recipe renders for every remote cluster kind by changing cluster= only
(with its data locations where that cluster reads them), and what a cluster cannot read is refused in one line."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from cluster_locations import cluster_inputs
from llm_launch.launcher import PROJECT_ROOT
from llm_launch.launcher.validate import validate

RECIPES = sorted(p.stem for p in (PROJECT_ROOT / "recipes").glob("*.yaml"))
REMOTE = ("sagemaker", "eks", "slurm")


def _task(recipe: str) -> str:
    text = yaml.safe_load((PROJECT_ROOT / "recipes" / f"{recipe}.yaml").read_text())
    if "task" in text:
        return text["task"]
    return next(d["override /training"] for d in text["defaults"] if isinstance(d, dict) and "override /training" in d)


@pytest.mark.parametrize("cluster", REMOTE)
@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_renders_on_every_cluster_by_changing_cluster(recipe, cluster, job_for, render_job, tmp_path):
    job = job_for(f"recipe={recipe}", f"cluster={cluster}", *cluster_inputs(cluster, _task(recipe)), "action=render")
    if cluster == "sagemaker" and job.instance.accelerator == "cpu":
        findings, _ = validate(job)  # SageMaker's catalog has no CPU node type: the one refusal by design
        assert [p.field for p in findings.problems] == ["instance"]
        return
    remote, files = render_job(job, tmp_path / "rendered")
    assert files and all(f.is_file() for f in files)


@pytest.mark.parametrize(("cluster", "key", "value", "fix"), [
    ("eks", "training.data.train_path", "{root}/data/sample/corpus/train.jsonl", "training.data.train_path=/fsx/<path>"),
    ("eks", "training.data.tokenizer_path", "/opt/ml/input/data/tokenizer", "training.data.tokenizer_path=/fsx/<path>"),
    ("slurm", "training.data.train_path", "/opt/ml/input/data/train", "training.data.train_path=/fsx/<path>"),
    ("sagemaker", "training.data.tokenizer_path", "{root}/data/sample/tokenizer", "cluster.sagemaker.channels.<name>"),
])
def test_a_laptop_path_or_a_channel_path_is_refused_in_one_line_naming_the_key(cluster, key, value, fix, tmp_path):
    recipe = "recipe=llama3_8b_cpt_trn1"
    others = [o for o in cluster_inputs(cluster, "cpt") if not o.startswith(f"{key}=")]
    command = [sys.executable, "-m", "llm_launch.launcher.cli", recipe, f"cluster={cluster}", *others,
               f"{key}={value.format(root=PROJECT_ROOT)}", "action=render", f"output_dir={tmp_path / 'out'}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    errors = [line.strip() for line in done.stderr.splitlines() if line.strip().startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {key}: ") and fix in errors[0], done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "out" / "job.yaml").exists()
