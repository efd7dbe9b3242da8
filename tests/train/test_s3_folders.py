"""s3:// tokenizer and model folders copied onto the node at start (train/s3_folders.py), against moto_server."""

from __future__ import annotations

import threading

import boto3
import pytest
from llm_launch.launcher import PROJECT_ROOT
from llm_launch.train.errors import JobError
from llm_launch.train.s3_folders import COMPLETE, localize_folders
from moto_endpoint import REGION

TOKENIZER = PROJECT_ROOT / "data" / "sample" / "tokenizer"


def _upload(prefix: str) -> None:
    s3 = boto3.session.Session(region_name=REGION).client("s3")
    s3.create_bucket(Bucket="inputs", CreateBucketConfiguration={"LocationConstraint": REGION})
    for file in TOKENIZER.rglob("*"):
        if file.is_file():
            s3.upload_file(str(file), "inputs", f"{prefix}/{file.relative_to(TOKENIZER)}")


@pytest.fixture
def job(job_for):
    return job_for("recipe=tiny_llama_cpt", "cluster.region=" + REGION)


def _same_files(folder):
    names = {p.relative_to(TOKENIZER) for p in TOKENIZER.rglob("*") if p.is_file()}
    assert {p.relative_to(folder) for p in folder.rglob("*") if p.is_file() and p.name != COMPLETE} == names
    assert all((folder / n).read_bytes() == (TOKENIZER / n).read_bytes() for n in names)


def test_an_s3_tokenizer_is_copied_once_per_node_and_the_job_reads_the_copy(aws, job, tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_LAUNCH_S3_CACHE", str(tmp_path / "cache"))
    _upload("tok/v1")
    job.training.data.tokenizer_path = "s3://inputs/tok/v1/"
    ranks = [None] * 4

    def rank(i):  # the ranks of one node start together and share one copy
        ranks[i] = localize_folders(job)

    threads = [threading.Thread(target=rank, args=(i,)) for i in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    local = {r.training.data.tokenizer_path for r in ranks}
    assert len(local) == 1 and not local.pop().startswith("s3://")
    copied = tmp_path / "cache" / ranks[0].training.data.tokenizer_path.rsplit("/", 1)[1]
    _same_files(copied)
    assert job.training.data.tokenizer_path == "s3://inputs/tok/v1/"  # the job read from job.yaml is untouched
    gets = sum(r.startswith("GET /inputs/tok/v1/") for r in aws.requests)
    assert gets == sum(1 for p in TOKENIZER.rglob("*") if p.is_file())  # each object fetched once, for all ranks
    aws.requests.clear()
    assert localize_folders(job).training.data.tokenizer_path == ranks[0].training.data.tokenizer_path
    assert aws.requests == []  # a restarted pod on the same node finds the complete copy


def test_a_job_without_s3_folders_is_returned_as_it_is(job):
    assert localize_folders(job) is job


@pytest.mark.parametrize("key", ["training.data.tokenizer_path", "model.pretrained_path"])
def test_an_empty_or_unreadable_prefix_ends_in_one_line_naming_the_key(aws, job, tmp_path, monkeypatch, key):
    monkeypatch.setenv("LLM_LAUNCH_S3_CACHE", str(tmp_path / "cache"))
    _upload("tok/v1")
    if key == "model.pretrained_path":
        job.model.pretrained_path = "s3://no-such-bucket/model"
    else:
        job.training.data.tokenizer_path = "s3://inputs/tok/v2"
    with pytest.raises(JobError) as caught:
        localize_folders(job)
    message = str(caught.value)
    assert message.startswith(f"{key}: ") and "\n" not in message
    assert ("NoSuchBucket" in message) if key == "model.pretrained_path" else ("holds no objects" in message)
    assert not list((tmp_path / "cache").glob("*.partial"))
