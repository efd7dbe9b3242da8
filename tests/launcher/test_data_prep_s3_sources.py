"""data_prep sources at s3:// URIs, checked at plan time against moto_server (tests/moto_endpoint.py): a source the
job cannot read is refused with one line before anything runs, as an unreachable s3:// intermediates prefix is."""

import boto3
import pytest
from llm_launch.launcher import PROJECT_ROOT
from llm_launch.launcher.validate import validate
from moto_endpoint import REGION

SAMPLE = PROJECT_ROOT / "data" / "sample" / "corpus" / "train.jsonl"


def source_problems(job_for, uri: str, fmt: str = "jsonl") -> dict[str, str]:
    job = job_for("recipe=prepare_sample", f"data_prep.sources=[{{name: web, path: '{uri}', format: {fmt}}}]")
    findings, _ = validate(job)
    return {p.field: p.message for p in findings.problems if p.field.startswith("data_prep.sources")}


def test_s3_sources_are_listed_at_plan_time_and_unreadable_ones_refused_one_line_each(aws, job_for):
    pytest.importorskip("s3fs", reason="s3fs is not installed (pip install -e '.[dev]' installs it)")
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="corpus", CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.upload_file(str(SAMPLE), "corpus", "web/part-0.jsonl")
    assert source_problems(job_for, "s3://corpus/web") == {}
    assert source_problems(job_for, "s3://corpus/web/part-0.jsonl") == {}

    missing = source_problems(job_for, "s3://no-such-bucket/web")
    assert list(missing) == ["data_prep.sources[0].path"]
    message = missing["data_prep.sources[0].path"]
    assert message.startswith("s3://no-such-bucket/web: cannot list it (") and "\n" not in message
    assert "check the URI, the credentials and the region" in message

    empty = source_problems(job_for, "s3://corpus/nothing-here")
    assert empty == {"data_prep.sources[0].path": "s3://corpus/nothing-here: no object at that key or under that "
                                                  "prefix; check the URI"}
    wrong_format = source_problems(job_for, "s3://corpus/web", fmt="parquet")
    assert wrong_format["data_prep.sources[0].path"].startswith("s3://corpus/web: no parquet files (.parquet)")
