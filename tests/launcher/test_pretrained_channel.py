"""A SageMaker job's pretrained model in an input channel: its config.json is read at plan time from the channel's
S3 prefix (moto_server standing in for S3), filled into model=pretrained and checked against a named group;
a prefix the launcher cannot read is left to the job, with a warning."""

from __future__ import annotations

import boto3
from llm_launch.launcher.validate import validate
from tiny_checkpoints import make_checkpoint

CHANNEL = ["cluster.sagemaker.channels.model=s3://models/llama31", "model.pretrained_path=/opt/ml/input/data/model"]


def test_channel_config_is_read_through_s3(job_for, aws, tmp_path):
    source = make_checkpoint("llama31", tmp_path / "llama31")
    client = boto3.client("s3")
    client.create_bucket(Bucket="models", CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    client.upload_file(str(source / "config.json"), "models", "llama31/config.json")

    filled = job_for("recipe=llama2_7b_sft_p5_fsdp", "model=pretrained", *CHANNEL)
    assert (filled.model.hidden_size, filled.model.rope_scaling["rope_type"]) == (64, "llama3")
    assert filled.model.source == "s3://models/llama31/config.json"

    named = job_for("recipe=llama2_7b_sft_p5_fsdp", *CHANNEL)
    problems = {p.field: p.message for p in validate(named)[0].problems}
    assert "says 4096 but s3://models/llama31/config.json says 64" in problems["model.hidden_size"]
    assert "rope_type:llama3" in problems["model.rope_scaling"]

    unread = job_for("recipe=llama2_7b_sft_p5_fsdp", "cluster.sagemaker.channels.model=s3://no-such-bucket/m",
                     "model.pretrained_path=/opt/ml/input/data/model")
    findings, _ = validate(unread)
    assert not [p for p in findings.problems if p.field.startswith("model.")]
    assert any(w.startswith("model.pretrained_path: config.json not checked before the job") for w in findings.warnings)
