"""SageMaker: every recipe x instance request passes botocore's service model, and names are made valid."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import regex
from llm_launch.launcher.clusters.sagemaker.render import (
    BASE_NAME_MAX,
    base_job_name,
    build_request,
    named_for_submission,
)
from llm_launch.launcher.clusters.sagemaker.request_model import request_errors
from llm_launch.launcher.clusters.sagemaker.runner import submission_request

TRN = ("ml.trn1.32xlarge", "ml.trn1n.32xlarge", "ml.trn2.48xlarge")
GPU = ("ml.g5.12xlarge", "ml.g5.48xlarge", "ml.p4d.24xlarge", "ml.p4de.24xlarge", "ml.p5.48xlarge",
       "ml.p5e.48xlarge", "ml.p5en.48xlarge")
COMBOS = ([("llama3_8b_cpt_trn1", i) for i in TRN] + [("llama2_70b_cpt_trn1", i) for i in TRN]
          + [("llama2_7b_sft_p5_fsdp", i) for i in GPU[2:]] + [("mistral_7b_sft_g5", i) for i in GPU[1:]]
          + [("smoke_allreduce", i) for i in TRN + GPU])
EXTRAS = ["cluster.sagemaker.use_spot=true", "cluster.sagemaker.max_wait_hours=240",
          "cluster.sagemaker.max_retry_attempts=3",
          "cluster.sagemaker.subnets=[subnet-0abc]", "cluster.sagemaker.security_group_ids=[sg-0abc]",
          "+cluster.sagemaker.tags={team: ml-research, cost-center: '1234'}"]
NAME = regex.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")


@pytest.mark.parametrize("recipe, instance", COMBOS, ids=[f"{r}-{i}" for r, i in COMBOS])
def test_request_passes_the_service_model(job_for, recipe, instance, render_job):
    extras = EXTRAS if recipe == "smoke_allreduce" and instance.startswith("ml.p5.") else []
    job = job_for(f"recipe={recipe}", "cluster=sagemaker", f"instance={instance}", "action=render", *extras)
    remote, files = render_job(job)
    request = json.loads(files[-1].read_text())
    assert request_errors(request) == []
    submitted = named_for_submission(remote, request, "20260101120000")
    assert request_errors(submitted) == []
    assert request["ResourceConfig"] == {**request["ResourceConfig"], "InstanceType": instance,
                                         "InstanceCount": remote.trainer.num_nodes}
    assert all(isinstance(v, str) for v in request["HyperParameters"].values())
    assert remote.training.checkpoint.dir == "/opt/ml/checkpoints"
    channels = {c["ChannelName"] for c in request["InputDataConfig"]}
    assert "code" in channels
    if extras:
        assert request["EnableManagedSpotTraining"] is True
        assert request["StoppingCondition"]["MaxWaitTimeInSeconds"] >= request["StoppingCondition"][
            "MaxRuntimeInSeconds"]
        assert request["RetryStrategy"] == {"MaximumRetryAttempts": 3}
        assert request["VpcConfig"] == {"Subnets": ["subnet-0abc"], "SecurityGroupIds": ["sg-0abc"]}
        assert {"Key": "cost-center", "Value": "1234"} in request["Tags"]


def test_channels_follow_the_data_paths(job_for):
    sft = build_request(job_for("recipe=llama2_7b_sft_p5_fsdp", "cluster=sagemaker"), "/x/job.yaml")
    assert [c["ChannelName"] for c in sft["InputDataConfig"]] == ["code", "model", "train"]
    assert {c["InputMode"] for c in sft["InputDataConfig"][1:]} == {"FastFile"}
    smoke = build_request(job_for("recipe=smoke_allreduce", "cluster=sagemaker", "instance=ml.p5.48xlarge"), "/x")
    assert [c["ChannelName"] for c in smoke["InputDataConfig"]] == ["code"]


@pytest.mark.parametrize("name", [
    "a" * 200, "my_job.with.dots", "-leading-and-trailing-", "UPPER_and_lower_42", "x", "___",
])
def test_long_or_odd_names_become_valid_and_stay_distinct(job_for, name):
    job = job_for("recipe=smoke_allreduce", "cluster=sagemaker", "instance=ml.p5.48xlarge")
    job.job_name = name
    base = base_job_name(job)
    assert NAME.fullmatch(base) and len(base) <= BASE_NAME_MAX
    assert base == base_job_name(job)  # deterministic
    submitted = named_for_submission(job, build_request(job, "/x"), "20260101120000")
    assert request_errors(submitted) == [] and len(submitted["TrainingJobName"]) <= 63
    other = job_for("recipe=smoke_allreduce", "cluster=sagemaker", "instance=ml.p5.48xlarge")
    other.job_name = name + "2"
    assert base_job_name(other) != base


@pytest.mark.parametrize("path, value, phrase", [
    (("TrainingJobName",), "x" * 64, "above the maximum 63"),
    (("TrainingJobName",), "bad_name.x", "does not match"),
    (("ResourceConfig", "InstanceType"), "ml.trn9.99xlarge", "not one of the allowed values"),
    (("AlgorithmSpecification", "TrainingInputMode"), "Fast", "not one of the allowed values"),
    (("ResourceConfig", "KeepAlivePeriodInSeconds"), 99999, "above the maximum 21600"),
    (("CheckpointConfig", "S3Uri"), "gs://x", "does not match"),
    (("HyperParameters", "task"), 1, "expected a string"),
    (("Environment", "1BAD"), "x", "does not match"),
    (("Environment", "A"), "x" * 513, "above the maximum 512"),
    (("Unknown",), "x", "not a member"),
])
def test_the_model_check_rejects_what_the_api_rejects(job_for, path, value, phrase):
    request = build_request(job_for("recipe=llama3_8b_cpt_trn1", "cluster=sagemaker"), "/x/job.yaml")
    node = request
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert any(phrase in e for e in request_errors(request)), request_errors(request)


def test_submission_refuses_a_request_the_api_would_reject(job_for, tmp_path, render_job):
    job = job_for("recipe=llama3_8b_cpt_trn1", "cluster=sagemaker")
    remote, files = render_job(job, tmp_path)
    request = json.loads(files[-1].read_text())
    request["ResourceConfig"]["VolumeSizeInGB"] = "512"
    files[-1].write_text(json.dumps(request))
    from llm_launch.launcher.clusters.base import RunnerError

    with pytest.raises(RunnerError, match="VolumeSizeInGB"):
        submission_request(remote, tmp_path, datetime(2026, 1, 1, tzinfo=UTC))


def test_an_s3_checkpoint_dir_is_the_users_choice_and_is_kept(job_for, render_job, tmp_path):
    from llm_launch.launcher.jobfile import read_job
    from llm_launch.launcher.validate import validate

    job = job_for("recipe=llama3_8b_cpt_trn1", "cluster=sagemaker", "training.checkpoint.dir=s3://my-bucket/nxd")
    findings, _ = validate(job)
    assert not [w for w in findings.warnings if "NxD checkpoints assume" in w]
    container, files = render_job(job, tmp_path)
    assert read_job(files[0]).training.checkpoint.dir == "s3://my-bucket/nxd"
    assert read_job(files[0]).training.data.pack_dir == "/opt/ml/input/packed"
    default, _ = render_job(job_for("recipe=llama3_8b_cpt_trn1", "cluster=sagemaker"), tmp_path / "default")
    assert default.training.checkpoint.dir == "/opt/ml/checkpoints"
    findings, _ = validate(job_for("recipe=llama3_8b_cpt_trn1", "cluster=sagemaker"))
    assert [w for w in findings.warnings if "NxD checkpoints assume" in w]


def test_a_warm_pool_is_rendered_without_spot(job_for, render_job):
    job = job_for("recipe=smoke_allreduce", "cluster=sagemaker", "instance=ml.p5.48xlarge", "action=render",
                  "cluster.sagemaker.keep_alive_seconds=1800")
    _, files = render_job(job)
    request = json.loads(files[-1].read_text())
    assert request["ResourceConfig"]["KeepAlivePeriodInSeconds"] == 1800 and "EnableManagedSpotTraining" not in request
    assert request["Environment"]["FI_EFA_USE_DEVICE_RDMA"] == "1"
