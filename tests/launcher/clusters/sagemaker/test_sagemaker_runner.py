"""SageMaker submission, status, logs and stop against a real HTTP endpoint: moto_server (tests/moto_endpoint.py).

moto has no StopTrainingJob; the endpoint's front answers it as SageMaker does (tests/moto_endpoint.py).
The faults (5xx HTML pages, throttling, an expired token) are sent by that front as AWS sends them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime

import boto3
import pytest
from llm_launch.launcher.clusters import manage
from llm_launch.launcher.clusters.base import RunnerError
from llm_launch.launcher.clusters.records import append_record
from llm_launch.launcher.clusters.sagemaker import runner as sagemaker
from llm_launch.launcher.clusters.sagemaker.request_model import request_errors

NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
REGION = "us-west-2"
REAL = ["cluster.image=123456789012.dkr.ecr.us-west-2.amazonaws.com/llm-launch:trainium1-0.1.0",
        f"cluster.region={REGION}",
        "cluster.sagemaker.role_arn=arn:aws:iam::123456789012:role/Trainer",
        "cluster.sagemaker.s3_output_uri=s3://my-bucket/out",
        "cluster.sagemaker.s3_checkpoint_uri=s3://my-bucket/ckpt/run1",
        "cluster.sagemaker.s3_code_uri=s3://my-bucket/code",
        "cluster.sagemaker.channels.train=s3://my-bucket/data/train",
        "cluster.sagemaker.channels.tokenizer=s3://my-bucket/data/tok"]
RECORD = {"cluster": "sagemaker", "name": "job-1", "region": REGION}
HTML_503 = ("<!doctype html>\n<html><head><title>503 Service Unavailable</title><style>p {}</style></head>\n"
            "<body><h1>Service Unavailable</h1>\n<p>Back-end server is at capacity</p></body></html>")


def boto(service: str):
    return boto3.session.Session(region_name=REGION).client(service)


@pytest.fixture
def submitted(aws, job_for, tmp_path, render_job):
    """A job submitted to moto: (job as the container sees it, record)."""
    boto("s3").create_bucket(Bucket="my-bucket", CreateBucketConfiguration={"LocationConstraint": REGION})
    job = job_for("recipe=llama3_8b_cpt_trn1", "cluster=sagemaker", "action=submit", *REAL)
    container_job, files = render_job(job, tmp_path)
    record = sagemaker.submit(container_job, tmp_path, now=NOW)
    append_record(tmp_path, {"cluster": "sagemaker", **record})
    return container_job, record, files


def test_submit_uploads_job_yaml_and_creates_the_rendered_training_job(submitted, tmp_path):
    _, record, files = submitted
    name = "llama3-8b-cpt-trn1-20260304050607"
    assert record["name"] == name and record["arn"].endswith(f":training-job/{name}")
    rendered = json.loads(files[-1].read_text())
    sent = json.loads((tmp_path / f"sagemaker_request.{name}.json").read_text())
    assert request_errors(sent) == []
    assert sent["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == f"s3://my-bucket/code/{name}/"
    assert rendered["TrainingJobName"] == "llama3-8b-cpt-trn1"  # the rendered file is left as rendered
    described = boto("sagemaker").describe_training_job(TrainingJobName=name)
    assert described["RoleArn"] == sent["RoleArn"]
    assert described["ResourceConfig"]["InstanceCount"] == 4
    assert described["AlgorithmSpecification"]["TrainingImage"] == sent["AlgorithmSpecification"]["TrainingImage"]
    uploaded = boto("s3").get_object(Bucket="my-bucket", Key=f"code/{name}/job.yaml")["Body"].read()
    assert uploaded == (tmp_path / "job.yaml").read_bytes()


def test_status_and_stop_of_the_submitted_job(submitted, tmp_path, capsys, aws):
    _, record, _ = submitted
    manage("status", tmp_path)
    assert capsys.readouterr().out.startswith(f"{record['name']}: ")
    manage("stop", tmp_path)
    assert f"stopping {record['name']}" in capsys.readouterr().out
    assert aws.stopped == [record["name"]]
    append_record(tmp_path, {**RECORD, "name": "no-such-job"})
    with pytest.raises(RunnerError, match="StopTrainingJob failed: ValidationException: Requested resource not found"):
        manage("stop", tmp_path)


def test_status_shows_progress_and_eta_from_the_synced_checkpoint_prefix(submitted, tmp_path, capsys):
    from llm_launch.launcher.progress import Progress, status_line

    _, record, _ = submitted
    manage("status", tmp_path)
    assert len(capsys.readouterr().out.splitlines()) == 1  # no progress synced yet: the state alone
    progress = Progress(max_steps=1000, step=250, seconds_per_step=2.0, productive_s=450.0, checkpoint_s=20.0,
                        wall_s=500.0)
    boto("s3").put_object(Bucket="my-bucket", Key="ckpt/run1/.llm-launch-progress.json",  # cluster.sagemaker.s3_checkpoint_uri
                          Body=json.dumps(progress.to_dict()).encode())
    manage("status", tmp_path)
    state, progress_line = capsys.readouterr().out.splitlines()
    assert state.startswith(f"{record['name']}: ")
    assert progress_line == f"{record['name']}: {status_line(progress)}"
    assert "step 250/1000 (25%), 2.00 s/step, ETA 25m00s; goodput 90% " in progress_line


def test_logs_say_no_logs_yet_before_the_group_exists_then_show_the_newest_lines(aws, tmp_path, capsys):
    append_record(tmp_path, RECORD)
    manage("logs", tmp_path)
    assert "no logs yet for job-1" in capsys.readouterr().out

    logs = boto("logs")
    logs.create_log_group(logGroupName=sagemaker.LOG_GROUP)
    manage("logs", tmp_path)
    assert "no logs yet for job-1" in capsys.readouterr().out
    start = int(time.time() * 1000) - 10_000_000
    for host, offset in (("algo-1-1700000000", 0), ("algo-2-1700000000", 1)):
        stream = f"job-1/{host}"
        logs.create_log_stream(logGroupName=sagemaker.LOG_GROUP, logStreamName=stream)
        events = [{"timestamp": start + 10 * i + offset, "message": f"{host[:6]} line {i}"} for i in range(300)]
        logs.put_log_events(logGroupName=sagemaker.LOG_GROUP, logStreamName=stream, logEvents=events)
    manage("logs", tmp_path)
    out = capsys.readouterr().out.splitlines()
    shown = out[:-1]
    assert len(shown) == sagemaker.TAIL_LINES
    assert shown[-1] == "[algo-2-1700000000] algo-2 line 299"  # the newest line last
    assert shown[-2] == "[algo-1-1700000000] algo-1 line 299"
    assert "[algo-1-1700000000] algo-1 line 0" not in out  # never the start of a long job
    assert out[-1].startswith("llm-launch: the newest 100 lines of 2 log stream(s)")


@pytest.mark.parametrize("fault, expected", [
    (("DescribeTrainingJob", 503, HTML_503, "text/html"),
     "AWS had an internal error (HTTP 503); run it again later (503 Service Unavailable Service Unavailable "
     "Back-end server is at capacity)"),
    (("DescribeTrainingJob", 400, json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}),
      "application/x-amz-json-1.1"), "AWS is throttling these requests after 1 retries; wait a minute"),
    (("DescribeTrainingJob", 400, json.dumps({"__type": "ExpiredTokenException",
                                              "message": "The security token included in the request is expired"}),
      "application/x-amz-json-1.1"), "the AWS credentials have expired; run `aws sso login`"),
])
def test_aws_failures_are_one_line_naming_the_fix(aws, tmp_path, monkeypatch, fault, expected):
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("AWS_RETRY_MODE", "standard")
    append_record(tmp_path, RECORD)
    aws.fail(*fault)
    with pytest.raises(RunnerError) as caught:
        manage("status", tmp_path)
    message = str(caught.value)
    assert message.startswith("DescribeTrainingJob failed: ") and "\n" not in message
    assert expected in message
    assert "<" not in message


def test_a_missing_bucket_names_the_config_key(aws, job_for, tmp_path, render_job):
    job = job_for("recipe=llama3_8b_cpt_trn1", "cluster=sagemaker", "action=submit", *REAL)
    container_job, _ = render_job(job, tmp_path)
    with pytest.raises(RunnerError) as caught:
        sagemaker.submit(container_job, tmp_path, now=NOW)
    assert str(caught.value).startswith("checking bucket my-bucket failed: S3 bucket 'my-bucket' does not exist")
    assert "check `cluster.sagemaker.s3_code_uri`" in str(caught.value)


BAD_CONFIG = "[profile broken\nregion = us-west-2\n"


@pytest.mark.parametrize("setup, expected", [
    ({"AWS_PROFILE": "nobody"}, "AWS profile 'nobody' is not in ~/.aws/config or ~/.aws/credentials"),
    ({"AWS_CONFIG_FILE": "{bad}"}, "cannot parse the AWS config file"),
])
def test_bad_aws_config_ends_the_command_with_one_line_and_exit_2(aws, tmp_path, setup, expected):
    (tmp_path / "config").write_text(BAD_CONFIG)
    append_record(tmp_path, RECORD)
    env = {**aws.env(), "PATH": "/usr/bin:/bin"}
    env.update({k: v.format(bad=tmp_path / "config") for k, v in setup.items()})
    done = subprocess.run([sys.executable, "-m", "llm_launch.launcher.cli", "recipe=llama3_8b_cpt_trn1", "cluster=sagemaker",
                           *REAL, f"output_dir={tmp_path}", "action=status"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in done.stderr


@pytest.mark.parametrize("missing, key", [
    ("out-bucket", "cluster.sagemaker.s3_output_uri"),
    ("data-bucket", "cluster.sagemaker.channels.train"),
])
def test_a_missing_output_or_data_bucket_is_named_before_anything_is_created(aws, job_for, tmp_path, render_job,
                                                                             missing, key):
    """Issue 23: SageMaker accepts CreateTrainingJob with a missing bucket and the job fails later."""
    for bucket in {"my-bucket", "out-bucket", "data-bucket"} - {missing}:
        boto("s3").create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    args = [a for a in REAL if not a.startswith(("cluster.sagemaker.s3_output_uri", "cluster.sagemaker.channels.train"))]
    job = job_for("recipe=llama3_8b_cpt_trn1", "cluster=sagemaker", "action=submit", *args,
                  "cluster.sagemaker.s3_output_uri=s3://out-bucket/out",
                  "cluster.sagemaker.channels.train=s3://data-bucket/train")
    container_job, _ = render_job(job, tmp_path)
    with pytest.raises(RunnerError) as caught:
        sagemaker.submit(container_job, tmp_path, now=NOW)
    assert str(caught.value).startswith(f"checking bucket {missing} failed: S3 bucket '{missing}' does not exist")
    assert f"check `{key}`" in str(caught.value)
    assert boto("sagemaker").list_training_jobs()["TrainingJobSummaries"] == []
    assert "Contents" not in boto("s3").list_objects_v2(Bucket="my-bucket")  # nothing uploaded


def test_an_unknown_access_key_id_names_the_fix(aws, job_for, tmp_path, render_job):
    """S3's InvalidAccessKeyId (the endpoint answers as S3 does) gets the fix, not only AWS's words."""
    boto("s3").create_bucket(Bucket="my-bucket", CreateBucketConfiguration={"LocationConstraint": REGION})
    body = ('<?xml version="1.0" encoding="UTF-8"?><Error><Code>InvalidAccessKeyId</Code><Message>The AWS Access '
            'Key Id you provided does not exist in our records.</Message></Error>')
    aws.fail("/my-bucket/code", 403, body, "application/xml")  # the upload of job.yaml
    job = job_for("recipe=llama3_8b_cpt_trn1", "cluster=sagemaker", "action=submit", *REAL)
    container_job, _ = render_job(job, tmp_path)
    with pytest.raises(RunnerError) as caught:
        sagemaker.submit(container_job, tmp_path, now=NOW)
    message = str(caught.value)
    assert "AWS does not know the access key ID" in message and "check AWS_ACCESS_KEY_ID" in message, message
    assert "InvalidAccessKeyId: The AWS Access Key Id you provided does not exist" in message, message
    aws.reset()
    aws.fail("/my-bucket", 403, "", "application/xml")  # HeadBucket: S3 sends no body, so no code either
    with pytest.raises(RunnerError) as caught:
        sagemaker.submit(container_job, tmp_path, now=NOW)
    assert "AWS refused access to S3 bucket 'my-bucket'; check that the credentials are valid" in str(caught.value)


@pytest.mark.parametrize("action", ["plan", "submit"])
@pytest.mark.parametrize("setup, expected", [
    ({"AWS_PROFILE": "nobody"}, "error: AWS_PROFILE: reading the AWS configuration failed: AWS profile 'nobody'"),
    ({"AWS_CONFIG_FILE": "{bad}"}, "error: AWS_CONFIG_FILE: reading the AWS configuration failed: cannot parse"),
])
def test_bad_aws_config_at_plan_and_submit_is_one_line_exit_2(aws, tmp_path, setup, expected, action):
    """Issue 23: validation (the S3 data checks) read the AWS config outside the one-line handling."""
    (tmp_path / "config").write_text(BAD_CONFIG)
    env = {**aws.env(), "PATH": "/usr/bin:/bin"}
    env.update({k: v.format(bad=tmp_path / "config") for k, v in setup.items()})
    done = subprocess.run([sys.executable, "-m", "llm_launch.launcher.cli", "recipe=llama3_8b_cpt_trn1",
                           "cluster=sagemaker", *REAL, f"output_dir={tmp_path / 'out'}", f"action={action}"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "Error executing job" not in done.stderr, done.stderr
    assert expected in done.stderr, done.stderr


def _resource_in_use(name: str) -> tuple:
    return ("CreateTrainingJob", 400, json.dumps({"__type": "ResourceInUse", "message": "Training job names must be "
            f"unique within an AWS account and region, and a training job with this name already exists ({name})"}),
            "application/x-amz-json-1.1")


def test_a_retried_create_that_finds_its_own_job_is_a_success(aws, job_for, tmp_path, render_job):
    """Issue 23: the first CreateTrainingJob created the job but its response was lost; botocore's retry is told
    the name is taken. moto does not refuse a taken name, so the first attempt is this test's own call with the
    same request, and the endpoint answers the retry as SageMaker does."""
    boto("s3").create_bucket(Bucket="my-bucket", CreateBucketConfiguration={"LocationConstraint": REGION})
    job = job_for("recipe=llama3_8b_cpt_trn1", "cluster=sagemaker", "action=submit", *REAL)
    container_job, _ = render_job(job, tmp_path)
    request = sagemaker.submission_request(container_job, tmp_path, NOW)
    created = boto("sagemaker").create_training_job(**request)
    aws.fail(*_resource_in_use(request["TrainingJobName"]))
    record = sagemaker.submit(container_job, tmp_path, now=NOW)
    assert record == {"name": request["TrainingJobName"], "arn": created["TrainingJobArn"], "region": REGION}


def test_a_taken_name_of_another_job_is_still_refused(aws, job_for, tmp_path, render_job):
    boto("s3").create_bucket(Bucket="my-bucket", CreateBucketConfiguration={"LocationConstraint": REGION})
    job = job_for("recipe=llama3_8b_cpt_trn1", "cluster=sagemaker", "action=submit", *REAL)
    container_job, _ = render_job(job, tmp_path)
    request = sagemaker.submission_request(container_job, tmp_path, NOW)
    boto("sagemaker").create_training_job(**{**request, "RoleArn": "arn:aws:iam::123456789012:role/Other"})
    aws.fail(*_resource_in_use(request["TrainingJobName"]))
    with pytest.raises(RunnerError, match="CreateTrainingJob failed: ResourceInUse: Training job names must be"):
        sagemaker.submit(container_job, tmp_path, now=NOW)
