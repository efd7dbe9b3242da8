"""CPT and SFT on the tiny model train end to end from save_to_disk folders, Parquet and S3 (moto_server):
a few steps each, one process, through the CLI."""

from __future__ import annotations

import json
import math

import boto3
from sample_inputs import SEQ_LEN

TINY = ("trainer.nproc_per_node=1", "training.max_steps=2", "training.checkpoint.every_n_steps=0",
        f"training.seq_len={SEQ_LEN}", "training.eval_batches=1")


def _bucket(aws):
    client = boto3.client("s3")
    client.create_bucket(Bucket="data", CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    return client


def _finished(result, out_dir, records) -> dict:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    steps = records(out_dir)
    assert sorted(steps) == [1, 2] and all(math.isfinite(r["loss"]) for r in steps.values())
    return json.loads((out_dir / "metrics.json").read_text())


def test_cpt_trains_from_token_rows_in_place_and_validates_on_text_from_s3(sample_inputs, aws, launch, records,
                                                                          tmp_path):
    client = _bucket(aws)
    for path in sorted(sample_inputs.text_saved.iterdir()):
        client.upload_file(str(path), "data", f"text/{path.name}")
    result = launch(tmp_path, *TINY, f"training.data.train_path={sample_inputs.tokens_saved}",
                    "training.data.valid_path=s3://data/text")
    summary = _finished(result, tmp_path, records)
    assert math.isfinite(summary["val_loss"])
    log = (tmp_path / "train.log").read_text()
    assert "packing s3://data/text (datasets save_to_disk folder, text)" in log
    assert "packing" not in log.replace("packing s3://data/text", "")  # the token rows were read where they are


def test_sft_trains_from_parquet_on_s3_and_validates_on_a_save_to_disk_folder(sample_inputs, aws, launch, records,
                                                                             tmp_path):
    client = _bucket(aws)
    client.upload_file(str(sample_inputs.root / "sft.parquet"), "data", "sft/train.parquet")
    result = launch(tmp_path, "recipe=tiny_llama_sft", *TINY, "training.data.train_path=s3://data/sft",
                    f"training.data.valid_path={sample_inputs.sft_saved}")
    summary = _finished(result, tmp_path, records)
    assert math.isfinite(summary["val_loss"])
    index = json.loads(next((tmp_path / "data").glob("sft-sft-*/index.json")).read_text())
    assert index["loss_mask"] and index["source"] == "s3://data/sft" and index["input_layout"] == "Parquet"
