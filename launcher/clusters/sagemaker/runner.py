"""SageMaker: upload job.yaml, CreateTrainingJob with boto3, and describe, logs and stop.

The rendered request is given its unique name (base + UTC time) and checked against botocore's
service model before anything is sent. boto3 alone is needed, not the sagemaker SDK:
https://boto3.amazonaws.com/v1/documentation/api/latest/reference/services/sagemaker/client/create_training_job.html
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from launcher.clusters.base import RunnerError
from launcher.clusters.records import utc_now
from launcher.clusters.sagemaker.render import NAME_SUFFIX_FORMAT, REQUEST_FILE, code_prefix, named_for_submission
from launcher.clusters.sagemaker.request_model import request_errors
from launcher.config.schema import JobConfig
from launcher.jobfile import JOB_FILE, write_text_atomic

SUBMITTED_REQUEST = "sagemaker_request.{name}.json"
"""The exact request sent, kept next to the rendered one."""
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
INSTALL_HINT = "pip install 'llm-launch[aws]'"


def make_session(region: str):
    """A boto3 session for the job's region (tests replace this to stub the clients)."""
    try:
        import boto3
    except ImportError:
        raise RunnerError(f"boto3 is not installed; {INSTALL_HINT}") from None
    return boto3.session.Session(region_name=region)


def _aws_errors() -> tuple[type[Exception], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    return BotoCoreError, ClientError


def _call(what: str, fn, **kwargs):
    """One AWS call; its failures become one line (AWS messages carry no credentials)."""
    try:
        return fn(**kwargs)
    except _aws_errors() as exc:
        raise RunnerError(f"{what} failed: {str(exc).splitlines()[0]}") from None


def split_s3(uri: str) -> tuple[str, str]:
    """(bucket, key) of an s3:// URI."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def submission_request(job: JobConfig, out_dir: Path, now: datetime) -> dict:
    """The rendered request under its unique name, checked against the service model."""
    try:
        rendered = json.loads((out_dir / REQUEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunnerError(f"cannot read the rendered {out_dir / REQUEST_FILE}: {exc}") from None
    request = named_for_submission(job, rendered, now.strftime(NAME_SUFFIX_FORMAT))
    errors = request_errors(request)
    if errors:
        shown = "; ".join(errors[:5]) + (f"; and {len(errors) - 5} more" if len(errors) > 5 else "")
        raise RunnerError(f"the CreateTrainingJob request breaks the SageMaker API: {shown}")
    return request


def submit(job: JobConfig, out_dir: Path, now: datetime | None = None) -> dict:
    request = submission_request(job, out_dir, now or utc_now())
    name = request["TrainingJobName"]
    session = make_session(job.cluster.region)
    bucket, key = split_s3(code_prefix(job, name) + JOB_FILE)
    body = (out_dir / JOB_FILE).read_bytes()
    _call("uploading job.yaml", session.client("s3").put_object, Bucket=bucket, Key=key, Body=body)
    response = _call("CreateTrainingJob", session.client("sagemaker").create_training_job, **request)
    write_text_atomic(out_dir / SUBMITTED_REQUEST.format(name=name), json.dumps(request, indent=2, sort_keys=True)
                      + "\n")
    print(f"llm-launch: submitted SageMaker training job {name} in {job.cluster.region}")
    return {"name": name, "arn": response.get("TrainingJobArn", ""), "region": job.cluster.region}


def status(record: dict, out_dir: Path) -> None:
    client = make_session(record["region"]).client("sagemaker")
    job = _call("DescribeTrainingJob", client.describe_training_job, TrainingJobName=record["name"])
    line = f"{record['name']}: {job['TrainingJobStatus']} ({job.get('SecondaryStatus', '')})"
    if job.get("FailureReason"):
        line += f": {job['FailureReason']}"
    print(line)


def logs(record: dict, out_dir: Path) -> None:
    client = make_session(record["region"]).client("logs")
    streams = _call("DescribeLogStreams", client.describe_log_streams, logGroupName=LOG_GROUP,
                    logStreamNamePrefix=f"{record['name']}/")
    names = sorted(s["logStreamName"] for s in streams.get("logStreams", []))
    if not names:
        print(f"llm-launch: no logs yet for {record['name']} (action=status shows where it is)")
    for stream in names:
        events = _call("GetLogEvents", client.get_log_events, logGroupName=LOG_GROUP, logStreamName=stream,
                       startFromHead=True)
        for event in events.get("events", []):
            print(f"[{stream}] {event['message']}")


def stop(record: dict, out_dir: Path) -> None:
    client = make_session(record["region"]).client("sagemaker")
    _call("StopTrainingJob", client.stop_training_job, TrainingJobName=record["name"])
    print(f"llm-launch: stopping {record['name']}")
