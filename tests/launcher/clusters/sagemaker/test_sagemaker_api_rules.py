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
