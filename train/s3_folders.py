"""s3:// tokenizer and model folders, copied onto the node before anything reads them.

A job on EKS may name its tokenizer (training.data.tokenizer_path) or model (model.pretrained_path) as an s3://
prefix (launcher/validate.py allows it there; SageMaker maps such URIs to input channels instead). The entrypoint
copies each prefix once per node into a node-local folder (LLM_LAUNCH_S3_CACHE, default /tmp/llm-launch-s3) with
boto3 and whatever credentials the pod has: boto3's default chain reads the web identity that IRSA injects
(AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE: https://docs.aws.amazon.com/eks/latest/userguide/iam-roles-for-service-accounts.html),
EKS Pod Identity's container credentials, or AWS_* variables; no secret is rendered into the manifest.
AWS_ENDPOINT_URL, when set, is honoured by boto3 (path-style addressing, as for the checkpoint store).

The ranks of a node share one copy: the first to take the folder's file lock downloads into a temporary folder and
renames it into place when every object is there; the others wait on the lock and find the folder complete. A
folder already complete (a restarted pod on the same node) is not downloaded again.
"""

from __future__ import annotations

import copy
import fcntl
import hashlib
import os
import shutil
from pathlib import Path

from llm_launch.train.errors import JobError

CACHE_ENV = "LLM_LAUNCH_S3_CACHE"
DEFAULT_CACHE = "/tmp/llm-launch-s3"
COMPLETE = ".llm-launch-complete"
S3_EXTRA_HINT = "pip install 'llm-launch[s3]'"


def folder_keys(job) -> list[tuple[str, str]]:
    """(key, s3:// URI) of each folder input the job names in S3."""
    keys = [("training.data.tokenizer_path", job.training.data.tokenizer_path),
            ("model.pretrained_path", job.model.pretrained_path)]
    return [(key, uri) for key, uri in keys if uri and uri.startswith("s3://")]


def _client(region: str):
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise JobError(f"an s3:// tokenizer or model folder is copied with boto3; {S3_EXTRA_HINT}") from None
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or None
    config = Config(s3={"addressing_style": "path"}) if endpoint else None
    return boto3.session.Session(region_name=region or None).client("s3", config=config)


def _download(client, key: str, uri: str, target: Path) -> int:
    """Every object under the prefix into target (relative names kept); the number of objects."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    prefix = prefix.rstrip("/") + "/" if prefix.strip("/") else ""
    count = 0
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                name = obj["Key"][len(prefix):]
                if not name or name.endswith("/"):
                    continue
                dest = target / name
                if not dest.resolve().is_relative_to(target.resolve()):
                    raise JobError(f"{key}: {uri} holds an object named {obj['Key']!r} that leaves its folder")
                dest.parent.mkdir(parents=True, exist_ok=True)
                client.download_file(bucket, obj["Key"], str(dest))
                count += 1
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise JobError(f"{key}: cannot read {uri}: {error.get('Code', 'error')}: {error.get('Message', exc)}; give "
                       "the pod's service account (IRSA or EKS Pod Identity) s3:ListBucket and s3:GetObject on it") \
            from None
    except BotoCoreError as exc:
        raise JobError(f"{key}: cannot read {uri}: {exc}; the pod needs AWS credentials (IRSA or EKS Pod "
                       "Identity on its service account)") from None
    return count


def fetch_folder(key: str, uri: str, region: str, cache: Path) -> Path:
    """The node-local copy of an s3:// folder, downloaded by whichever rank of the node comes first."""
    folder = cache / hashlib.sha256(uri.rstrip("/").encode()).hexdigest()[:16]
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f"{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (folder / COMPLETE).is_file():
            return folder
        partial = cache / f"{folder.name}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(folder, ignore_errors=True)
        partial.mkdir()
        try:
            if _download(_client(region), key, uri, partial) == 0:
                raise JobError(f"{key}: {uri} holds no objects; point it at the S3 prefix of the folder (the one "
                               "holding tokenizer.json or config.json)")
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)  # nothing half-copied is left to be taken for a copy
            raise
        (partial / COMPLETE).write_text(uri + "\n")
        partial.rename(folder)
    return folder


def localize_folders(job):
    """The job with its s3:// tokenizer and model folders replaced by their node-local copies (the job itself when
    it names none)."""
    wanted = folder_keys(job)
    if not wanted:
        return job
    cache = Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)
    job = copy.deepcopy(job)
    for key, uri in wanted:
        local = str(fetch_folder(key, uri, job.cluster.region, cache))
        if key == "model.pretrained_path":
            job.model.pretrained_path = local
        else:
            job.training.data.tokenizer_path = local
        if os.environ.get("LOCAL_RANK", "0") == "0":
            print(f"{key}: {uri} copied to {local}", flush=True)
    return job
