"""SageMaker: upload job.yaml, CreateTrainingJob with boto3, and describe, logs and stop.

The rendered request is given its unique name (base + UTC time) and checked against botocore's
service model before anything is sent. boto3 alone is needed, not the sagemaker SDK:
https://boto3.amazonaws.com/v1/documentation/api/latest/reference/services/sagemaker/client/create_training_job.html
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from llm_launch.launcher.aws_errors import aws_error_line, one_line
from llm_launch.launcher.clusters.base import RunnerError
from llm_launch.launcher.clusters.records import utc_now
from llm_launch.launcher.clusters.sagemaker.render import (
    NAME_SUFFIX_FORMAT,
    REQUEST_FILE,
    code_prefix,
    named_for_submission,
)
from llm_launch.launcher.clusters.sagemaker.request_model import request_errors
from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.jobfile import JOB_FILE, write_text_atomic
from llm_launch.launcher.progress import CHECKPOINT_SIDE_PROGRESS, read_progress, status_line

SUBMITTED_REQUEST = "sagemaker_request.{name}.json"
"""The exact request sent, kept next to the rendered one."""
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
TAIL_LINES = 100
"""Lines action=logs shows: the newest, across the instances' streams."""
INSTALL_HINT = "pip install 'llm-launch[aws]'"


def make_session(region: str):
    """A boto3 session for the job's region; a profile or config file it cannot use is one line."""
    try:
        import boto3
    except ImportError:
        raise RunnerError(f"boto3 is not installed; {INSTALL_HINT}") from None
    return _call("starting an AWS session", boto3.session.Session, where={"region": region}, region_name=region)


def client(session, service: str, region: str):
    """A client of one AWS service (a malformed ~/.aws/config surfaces here, as one line)."""
    return _call(f"creating the {service} client", session.client, where={"region": region}, service_name=service)


def _call(what: str, fn, *, where: dict[str, str] | None = None, **kwargs):
    """One AWS call; its failures become one line saying what to do (llm_launch.launcher.aws_errors)."""
    try:
        return fn(**kwargs)
    except Exception as exc:
        line = aws_error_line(what, exc, **(where or {}))
        if line is None:
            raise
        raise RunnerError(line) from None


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


def request_buckets(request: dict, code_uri: str) -> dict[str, str]:
    """bucket -> the config key that names it, of the code prefix (job.yaml) and the output, checkpoint and
    input channels the request uses."""
    uris = [("cluster.sagemaker.s3_code_uri", code_uri),
            ("cluster.sagemaker.s3_output_uri", request.get("OutputDataConfig", {}).get("S3OutputPath")),
            ("cluster.sagemaker.s3_checkpoint_uri", request.get("CheckpointConfig", {}).get("S3Uri"))]
    for channel in request.get("InputDataConfig", []):
        uri = channel.get("DataSource", {}).get("S3DataSource", {}).get("S3Uri")
        uris.append((f"cluster.sagemaker.channels.{channel.get('ChannelName', '?')}", uri))
    found: dict[str, str] = {}
    for key, uri in uris:
        if uri and uri.startswith("s3://"):
            found.setdefault(split_s3(uri)[0], key)
    return found


def check_buckets(request: dict, code_uri: str, region: str, s3) -> None:
    """Every bucket the job writes to or reads from exists (HeadBucket), before anything is uploaded: SageMaker
    accepts CreateTrainingJob with a missing one and the job fails minutes later."""
    for bucket, key in request_buckets(request, code_uri).items():
        _call(f"checking bucket {bucket}", s3.head_bucket, where={"region": region, "bucket": bucket, "key": key},
              Bucket=bucket)


SAME_JOB_FIELDS = (("RoleArn",), ("AlgorithmSpecification", "TrainingImage"), ("OutputDataConfig", "S3OutputPath"),
                   ("CheckpointConfig", "S3Uri"), ("ResourceConfig", "InstanceType"),
                   ("ResourceConfig", "InstanceCount"), ("HyperParameters",), ("Environment",))
"""Fields of DescribeTrainingJob that must equal the request for a job of that name to be the one it created
(those the answer has: moto's leaves out Environment)."""


def _field(data: dict, path: tuple[str, ...]):
    for name in path:
        data = data.get(name) or {} if isinstance(data, dict) else {}
    return data or None


def create_training_job(sagemaker, request: dict, region: str) -> dict:
    """CreateTrainingJob. botocore retries a call whose response was lost, and the retry is told the name is taken
    (ResourceInUse) by the job the first attempt created: then the job of that name is described, and when it is
    the one this request describes, that is the submission's answer."""
    from botocore.exceptions import ClientError

    try:
        return sagemaker.create_training_job(**request)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "ResourceInUse" or "already exists" in str(exc):
            existing = _call("DescribeTrainingJob", sagemaker.describe_training_job, where={"region": region},
                             TrainingJobName=request["TrainingJobName"])
            answered = [path for path in SAME_JOB_FIELDS if _field(existing, path) is not None]
            if answered and all(_field(existing, path) == _field(request, path) for path in answered):
                print(f"llm-launch: CreateTrainingJob was retried and the first attempt had created "
                      f"{request['TrainingJobName']}; recording that job")
                return existing
        raise RunnerError(aws_error_line("CreateTrainingJob", exc, region=region)) from None


def submit(job: JobConfig, out_dir: Path, now: datetime | None = None) -> dict:
    request = submission_request(job, out_dir, now or utc_now())
    name, region = request["TrainingJobName"], job.cluster.region
    session = make_session(region)
    check_buckets(request, code_prefix(job, name), region, client(session, "s3", region))
    bucket, key = split_s3(code_prefix(job, name) + JOB_FILE)
    body = (out_dir / JOB_FILE).read_bytes()
    _call("uploading job.yaml", client(session, "s3", region).put_object,
          where={"region": region, "bucket": bucket, "key": "cluster.sagemaker.s3_code_uri"},
          Bucket=bucket, Key=key, Body=body)
    response = create_training_job(client(session, "sagemaker", region), request, region)
    write_text_atomic(out_dir / SUBMITTED_REQUEST.format(name=name), json.dumps(request, indent=2, sort_keys=True)
                      + "\n")
    print(f"llm-launch: submitted SageMaker training job {name} in {region}")
    return {"name": name, "arn": response.get("TrainingJobArn", ""), "region": region}


def _client_for(record: dict, service: str):
    return client(make_session(record["region"]), service, record["region"])


def status(record: dict, out_dir: Path) -> None:
    job = _call("DescribeTrainingJob", _client_for(record, "sagemaker").describe_training_job,
                where={"region": record["region"]}, TrainingJobName=record["name"])
    line = f"{record['name']}: {job['TrainingJobStatus']} ({job.get('SecondaryStatus', '')})"
    if job.get("FailureReason"):
        line += f": {one_line(job['FailureReason'])}"
    print(line)
    progress = _progress(record, job)
    if progress is not None:
        print(f"{record['name']}: {status_line(progress)}")


def _progress(record: dict, job: dict):
    """The job's progress, which the trainer writes beside the checkpoints and SageMaker syncs to the job's
    CheckpointConfig.S3Uri while it runs; None where there is none (yet)."""
    uri = job.get("CheckpointConfig", {}).get("S3Uri")
    if not uri:
        return None
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    key = f"{prefix.rstrip('/')}/{CHECKPOINT_SIDE_PROGRESS}" if prefix.strip("/") else CHECKPOINT_SIDE_PROGRESS
    try:
        body = _client_for(record, "s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception:  # noqa: BLE001 - no progress yet, or not readable with these credentials: the state alone
        return None
    return read_progress(body.decode("utf-8", "replace"))


def _log_streams(logs_client, record: dict) -> list[str] | None:
    """The job's log streams (one per instance), or None while its log group does not exist yet."""
    from botocore.exceptions import ClientError

    streams: list[str] = []
    try:
        pages = logs_client.get_paginator("describe_log_streams").paginate(
            logGroupName=LOG_GROUP, logStreamNamePrefix=f"{record['name']}/")
        for page in pages:
            streams += [s["logStreamName"] for s in page.get("logStreams", [])]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return None
        raise RunnerError(aws_error_line("DescribeLogStreams", exc, region=record["region"])) from None
    except Exception as exc:
        line = aws_error_line("DescribeLogStreams", exc, region=record["region"])
        if line is None:
            raise
        raise RunnerError(line) from None
    return sorted(streams)


def logs(record: dict, out_dir: Path, lines: int = TAIL_LINES) -> None:
    """The newest lines of every instance's log, oldest first, as `aws logs tail` shows them."""
    logs_client = _client_for(record, "logs")
    streams = _log_streams(logs_client, record)
    if not streams:
        print(f"llm-launch: no logs yet for {record['name']} (the instances have not started writing; "
              "action=status shows where the job is)")
        return
    events: list[tuple[int, str, str]] = []
    for stream in streams:
        newest = _call("GetLogEvents", logs_client.get_log_events, where={"region": record["region"]},
                       logGroupName=LOG_GROUP, logStreamName=stream, startFromHead=False, limit=lines)
        events += [(e["timestamp"], stream, e["message"]) for e in newest.get("events", [])]
    events.sort(key=lambda e: e[0])
    for _, stream, message in events[-lines:]:
        print(f"[{stream.removeprefix(record['name'] + '/')}] {message.rstrip()}")
    print(f"llm-launch: the newest {min(lines, len(events))} lines of {len(streams)} log stream(s) in {LOG_GROUP}; "
          f"follow them with: aws logs tail {LOG_GROUP} --log-stream-name-prefix {record['name']}/ --follow "
          f"--region {record['region']}")


def stop(record: dict, out_dir: Path) -> None:
    _call("StopTrainingJob", _client_for(record, "sagemaker").stop_training_job, where={"region": record["region"]},
          TrainingJobName=record["name"])
    print(f"llm-launch: stopping {record['name']}")
