"""A data-preparation job (task=prepare) renders on every cluster kind and runs the dataprep entrypoint there,
never under neuron_parallel_compile (only tasks that compile model steps are precompiled)."""

from __future__ import annotations

import json

import pytest
import yaml
from cluster_locations import cluster_inputs
from llm_launch.launcher.clusters import CLUSTERS
from llm_launch.launcher.render.command import launch_steps

CHANNEL_SOURCE = ("data_prep.sources=[{name: web, path: /opt/ml/input/data/raw/web.jsonl}]",
                  "data_prep.tokenizer_path=/opt/ml/input/data/tokenizer",
                  "cluster.sagemaker.channels={raw: 's3://example-bucket/raw', tokenizer: 's3://example-bucket/tok'}")


@pytest.mark.parametrize("kind", sorted(CLUSTERS))
def test_a_prepare_job_renders_the_dataprep_entrypoint_without_precompile(kind, job_for, render_job, tmp_path):
    remote = not CLUSTERS[kind].runs_here
    overrides = ["recipe=prepare_sample", f"cluster={kind}", "neuron.precompile=true",
                 f"instance={'ml.trn1.32xlarge' if remote else 'local_cpu'}"]
    overrides += list(CHANNEL_SOURCE) if kind == "sagemaker" else []
    overrides += list(cluster_inputs("eks", "prepare")) if kind == "eks" else []
    job, files = render_job(job_for(*overrides), tmp_path)
    (step,) = launch_steps(job, "job.yaml")  # what each node runs (SageMaker's entry script builds it there)
    assert step[0] == "torchrun" and step[step.index("-m") + 1] == "llm_launch.dataprep.prepare"
    text = "\n".join(path.read_text(encoding="utf-8") for path in files)
    assert "neuron_parallel_compile" not in text and "--precompile" not in text
    if kind != "sagemaker":
        assert "llm_launch.dataprep.prepare" in text
    written = yaml.safe_load(files[0].read_text(encoding="utf-8"))
    assert written["task"] == "prepare"
    if kind == "sagemaker":  # the sources' and the tokenizer's channels travel with the job
        request = json.loads(next(p for p in files if p.suffix == ".json").read_text(encoding="utf-8"))
        channels = {c["ChannelName"] for c in request["InputDataConfig"]}
        assert {"raw", "tokenizer"} <= channels


def test_a_training_job_on_trainium_is_precompiled(job_for, render_job, tmp_path):
    _, files = render_job(job_for("recipe=llama3_8b_cpt_trn1", "cluster=slurm", "neuron.precompile=true",
                                         *cluster_inputs("slurm", "cpt")), tmp_path)
    script = next(p for p in files if p.suffix == ".sbatch").read_text(encoding="utf-8")
    assert "neuron_parallel_compile" in script and "llm_launch.train.cpt" in script


def test_a_sagemaker_prepare_job_names_an_undefined_source_channel(job_for):
    from llm_launch.launcher.validate import validate

    findings, _ = validate(job_for("recipe=prepare_sample", "cluster=sagemaker", "instance=ml.trn1.32xlarge",
                                   "data_prep.sources=[{name: web, path: /opt/ml/input/data/raw/web.jsonl}]",
                                   "data_prep.tokenizer_path=/opt/ml/input/data/tokenizer"))
    assert [p.field for p in findings.problems] == ["data_prep.sources[0].path"]
    assert "channel 'raw'" in findings.problems[0].message
