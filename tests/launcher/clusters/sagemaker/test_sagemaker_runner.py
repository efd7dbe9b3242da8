"""SageMaker submission with fake credentials: botocore's Stubber captures what reaches the API."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import boto3
import pytest
from botocore.stub import Stubber

from launcher.clusters import manage
from launcher.clusters.base import RunnerError
from launcher.clusters.records import append_record
from launcher.clusters.sagemaker import runner as sagemaker
from launcher.clusters.sagemaker.request_model import request_errors

NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
REAL = ["cluster.image=123456789012.dkr.ecr.us-west-2.amazonaws.com/llm-launch:trainium1-0.1.0",
        "cluster.region=us-west-2",
        "cluster.sagemaker.role_arn=arn:aws:iam::123456789012:role/Trainer",
        "cluster.sagemaker.s3_output_uri=s3://my-bucket/out",
        "cluster.sagemaker.s3_checkpoint_uri=s3://my-bucket/ckpt/run1",
        "cluster.sagemaker.s3_code_uri=s3://my-bucket/code",
        "cluster.sagemaker.channels.train=s3://my-bucket/data/train",
        "cluster.sagemaker.channels.tokenizer=s3://my-bucket/data/tok"]


class StubSession:
    """Hands out stubbed clients, like boto3.Session.client."""

    def __init__(self, region: str):
        session = boto3.session.Session(region_name=region, aws_access_key_id="testing",
                                        aws_secret_access_key="testing", aws_session_token="testing")
        self.clients = {name: session.client(name) for name in ("s3", "sagemaker", "logs")}
        self.stubs = {name: Stubber(client) for name, client in self.clients.items()}

    def client(self, name):
        return self.clients[name]


@pytest.fixture
def stub(monkeypatch):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(key, "testing")
    session = StubSession("us-west-2")
    monkeypatch.setattr(sagemaker, "make_session", lambda region: session)
    return session


def test_submit_uploads_job_yaml_and_sends_the_rendered_request(job_for, render_job, tmp_path, stub):
    job = job_for("recipe=llama3_8b_cpt_trn1", "cluster=sagemaker", "action=submit", *REAL)
    remote_job, files = render_job(job, tmp_path)
    rendered = json.loads(files[-1].read_text())
    name = "llama3-8b-cpt-trn1-20260304050607"
    expected = {**rendered, "TrainingJobName": name}
    expected["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] = f"s3://my-bucket/code/{name}/"
    assert request_errors(expected) == []
    stub.stubs["s3"].add_response("put_object", {}, {"Bucket": "my-bucket", "Key": f"code/{name}/job.yaml",
                                                     "Body": (tmp_path / "job.yaml").read_bytes()})
    arn = f"arn:aws:sagemaker:us-west-2:123456789012:training-job/{name}"
    stub.stubs["sagemaker"].add_response("create_training_job", {"TrainingJobArn": arn}, expected)
    with stub.stubs["s3"], stub.stubs["sagemaker"]:
        record = sagemaker.submit(remote_job, tmp_path, now=NOW)
        stub.stubs["sagemaker"].assert_no_pending_responses()
    assert record == {"name": name, "arn": arn, "region": "us-west-2"}
    assert json.loads((tmp_path / f"sagemaker_request.{name}.json").read_text()) == expected
    assert rendered["TrainingJobName"] == "llama3-8b-cpt-trn1"  # the rendered file is left as rendered


def test_status_logs_and_stop_of_a_recorded_job(tmp_path, stub, capsys):
    record = {"cluster": "sagemaker", "name": "job-1", "region": "us-west-2"}
    append_record(tmp_path, record)
    sm, logs = stub.stubs["sagemaker"], stub.stubs["logs"]
    sm.add_response("describe_training_job", {
        "TrainingJobName": "job-1", "TrainingJobArn": "arn:aws:sagemaker:us-west-2:1:training-job/job-1",
        "TrainingJobStatus": "Failed", "SecondaryStatus": "Failed", "FailureReason": "AlgorithmError: boom",
        "ModelArtifacts": {"S3ModelArtifacts": "s3://b/o"}, "AlgorithmSpecification": {"TrainingInputMode": "File"},
        "ResourceConfig": {"VolumeSizeInGB": 1}, "StoppingCondition": {}, "CreationTime": NOW},
        {"TrainingJobName": "job-1"})
    logs.add_response("describe_log_streams", {"logStreams": [{"logStreamName": "job-1/algo-1-1"}]},
                      {"logGroupName": "/aws/sagemaker/TrainingJobs", "logStreamNamePrefix": "job-1/"})
    logs.add_response("get_log_events", {"events": [{"timestamp": 1, "message": "step=1 loss=2.5"}]},
                      {"logGroupName": "/aws/sagemaker/TrainingJobs", "logStreamName": "job-1/algo-1-1",
                       "startFromHead": True})
    sm.add_response("stop_training_job", {}, {"TrainingJobName": "job-1"})
    with sm, logs:
        for action in ("status", "logs", "stop"):
            manage(action, tmp_path)
    out = capsys.readouterr().out
    assert "job-1: Failed (Failed): AlgorithmError: boom" in out
    assert "[job-1/algo-1-1] step=1 loss=2.5" in out
    assert "stopping job-1" in out


def test_aws_errors_become_one_line(tmp_path, stub):
    append_record(tmp_path, {"cluster": "sagemaker", "name": "job-1", "region": "us-west-2"})
    stub.stubs["sagemaker"].add_client_error("describe_training_job", "ValidationException",
                                             "Requested resource not found.")
    with stub.stubs["sagemaker"], pytest.raises(RunnerError) as caught:
        manage("status", tmp_path)
    assert "\n" not in str(caught.value) and "Requested resource not found" in str(caught.value)


def test_manage_without_a_submission_says_so(tmp_path):
    with pytest.raises(RunnerError, match="no submission recorded"):
        manage("status", tmp_path)
