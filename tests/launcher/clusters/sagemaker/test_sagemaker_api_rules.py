"""Render refuses what CreateTrainingJob would refuse, without an AWS account, naming the config key."""

from __future__ import annotations

import pytest
from llm_launch.launcher.validate import validate

BASE = ("recipe=llama3_8b_cpt_trn1", "cluster=sagemaker", "cluster.region=us-west-2",
        "cluster.sagemaker.role_arn=arn:aws:iam::123456789012:role/Trainer")


def problems(job_for, *overrides) -> dict[str, str]:
    findings, _ = validate(job_for(*BASE, *overrides))
    return {p.field: p.message for p in findings.problems}


def test_the_shipped_recipe_breaks_no_rule(job_for):
    assert problems(job_for) == {}


@pytest.mark.parametrize("override, key, words", [
    ("cluster.sagemaker.role_arn=Trainer", "cluster.sagemaker.role_arn", "does not match"),
    ("cluster.sagemaker.role_arn=arn:aws:iam::12345:role/Trainer", "cluster.sagemaker.role_arn", "does not match"),
    ("cluster.region=us-west-9", "cluster.region", "'us-west-9' is not a region where botocore knows SageMaker"),
    ("cluster.region=cn-north-1", "cluster.sagemaker.role_arn", "partition 'aws' but region cn-north-1 is in 'aws-cn'"),
    (f"+cluster.sagemaker.tags.team={'x' * 257}", "cluster.sagemaker.tags.team", "length 257 is above the maximum 256"),
    ("cluster.sagemaker.subnets=[subnet_1]", "cluster.sagemaker.subnets", "does not match"),
])
def test_a_value_the_api_refuses_is_an_error_naming_its_key(job_for, override, key, words):
    extra = ("cluster.sagemaker.security_group_ids=[sg-0123456789abcdef0]",) if "subnets" in override else ()
    found = problems(job_for, override, *extra)
    assert key in found, found
    assert words in found[key]


def test_tag_keys_with_the_aws_prefix_are_reserved(job_for):
    job = job_for(*BASE)
    job.cluster.sagemaker.tags["aws:owner"] = "me"  # a key Hydra's override grammar cannot spell
    findings, _ = validate(job)
    assert "reserved" in {p.field: p.message for p in findings.problems}["cluster.sagemaker.tags.aws:owner"]


def test_warm_pools_and_spot_do_not_mix(job_for):
    found = problems(job_for, "cluster.sagemaker.use_spot=true", "cluster.sagemaker.max_wait_hours=200",
                     "cluster.sagemaker.keep_alive_seconds=600")
    assert "warm pools do not work with managed spot training" in found["cluster.sagemaker.keep_alive_seconds"]


def test_render_stops_with_one_line_per_problem_and_exit_2(cli):
    done = cli(*BASE, "cluster.sagemaker.role_arn=Trainer", "cluster.region=mars-1", "action=render")
    assert done.returncode == 2
    lines = [ln for ln in done.stderr.splitlines() if ln.strip().startswith("error:")]
    assert any("cluster.sagemaker.role_arn" in ln for ln in lines)
    assert any("cluster.region" in ln and "check `cluster.region`" in ln for ln in lines)
    assert "Traceback" not in done.stderr


def test_the_cached_model_checks_as_botocore_s_own_does(job_for, tmp_path, monkeypatch):
    """The plain-data copy of the service model (kept in ~/.cache/llm-launch between runs) finds exactly what a walk
    of botocore's own model finds, for a sound request and for one that breaks rules of every kind."""
    import json

    import botocore.session
    from llm_launch.launcher.clusters.sagemaker import request_model
    from llm_launch.launcher.clusters.sagemaker.paths import CONTAINER_JOB_YAML, container_job
    from llm_launch.launcher.clusters.sagemaker.render import build_request

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    request_model._model.cache_clear()
    request = build_request(container_job(job_for(*BASE)), CONTAINER_JOB_YAML)
    broken = json.loads(json.dumps(request))
    broken["RoleArn"] = "Trainer"
    broken["ResourceConfig"]["InstanceCount"] = "two"
    broken["ResourceConfig"]["VolumeSizeInGB"] = 10**9
    broken["AlgorithmSpecification"]["TrainingInputMode"] = "Sometimes"
    broken["Tags"] = [{"Key": "k" * 200, "Value": "v"}]
    broken["Surprise"] = 1
    del broken["StoppingCondition"]
    real = botocore.session.get_session().get_service_model("sagemaker").operation_model("CreateTrainingJob").input_shape

    def walk(shape, value):
        errors: list[str] = []
        request_model._walk(shape, value, "", errors)
        return errors

    first = walk(request_model._input_shape(), broken)  # computed from botocore and written to the cache
    assert list(tmp_path.glob("llm-launch/sagemaker-CreateTrainingJob-botocore-*.json"))
    request_model._model.cache_clear()
    cached = walk(request_model._input_shape(), broken)  # read back from the cache
    assert first == cached == walk(real, broken) and len(cached) >= 6, cached
    assert walk(request_model._input_shape(), request) == walk(real, request) == []
    session = botocore.session.get_session()
    assert request_model.sagemaker_regions() == {r for p in session.get_available_partitions()
                                                 for r in session.get_available_regions("sagemaker", p)}
    request_model._model.cache_clear()
