"""Hugging Face datasets, Parquet and JSONL inputs, local and on S3 (moto_server), give the rows our own
packers give for the same records; token rows are read in place; bad rows are named."""

from __future__ import annotations

from types import SimpleNamespace

import boto3
import numpy as np
import pytest
from llm_launch.launcher.data_describe import Layout, Schema, describe
from llm_launch.launcher.data_store import StoreError
from llm_launch.train.data.dataset_inputs import ArrowRows, pack_input, reads_in_place
from llm_launch.train.data.packed import PackedDataset
from llm_launch.train.data.prepare import prepare_corpus
from llm_launch.train.data.sft import prepare_sft
from sample_inputs import SEQ_LEN, TOKENIZER


@pytest.fixture
def inputs(sample_inputs):
    return sample_inputs


def _job(task: str = "cpt", vocab_size: int = 2048):
    data = SimpleNamespace(text_field="text", tokenizer_path=str(TOKENIZER))
    return SimpleNamespace(training=SimpleNamespace(task=task, seq_len=SEQ_LEN, data=data),
                           model=SimpleNamespace(vocab_size=vocab_size))


def _rows(folder) -> tuple[np.ndarray, np.ndarray | None]:
    packed = PackedDataset.open(folder)
    ids = np.stack([packed.row(i) for i in range(len(packed))])
    masks = np.stack([packed.row_mask(i) for i in range(len(packed))]) if packed.has_loss_mask else None
    return ids, masks


@pytest.mark.parametrize(("name", "layout", "schema"), [
    ("text_saved", Layout.SAVED, Schema.TEXT), ("text_parquet", Layout.PARQUET, Schema.TEXT),
    ("tokens_saved", Layout.SAVED, Schema.TOKENS), ("labelled_saved", Layout.SAVED, Schema.TOKENS),
    ("sft_saved", Layout.SAVED, Schema.SFT), ("sft.parquet", Layout.PARQUET, Schema.SFT),
    ("text.jsonl", Layout.JSONL, Schema.TEXT),
])
def test_each_input_is_recognised_from_its_metadata(inputs, name, layout, schema):
    info = describe(str(inputs.root / name), "text")
    assert (info.layout, info.schema) == (layout, schema)
    if schema is Schema.TOKENS:
        assert info.fixed_rows == SEQ_LEN and 0 < info.max_token_id < 2048


@pytest.mark.parametrize("name", ["text_saved", "text_parquet"])
def test_text_inputs_pack_to_the_rows_of_the_same_jsonl_corpus(inputs, tmp_path, name):
    expected, _ = _rows(prepare_corpus(inputs.root / "text.jsonl", TOKENIZER, SEQ_LEN, tmp_path / "a", "text", 2048))
    folder = pack_input(describe(str(inputs.root / name), "text"), _job(), tmp_path / "b")
    got, _ = _rows(folder)
    np.testing.assert_array_equal(got, expected)
    assert pack_input(describe(str(inputs.root / name), "text"), _job(), tmp_path / "b") == folder  # reused


@pytest.mark.parametrize("name", ["sft_saved", "sft.parquet"])
def test_sft_inputs_pack_to_the_rows_and_masks_of_the_same_jsonl(inputs, tmp_path, name):
    expected_ids, expected_masks = _rows(prepare_sft(inputs.root / "sft.jsonl", TOKENIZER, SEQ_LEN, tmp_path / "a",
                                                     2048))
    ids, masks = _rows(pack_input(describe(str(inputs.root / name), "text"), _job("sft"), tmp_path / "b"))
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_array_equal(masks, expected_masks)


def test_token_rows_are_read_in_place_with_labels_as_the_loss_mask(inputs):
    import datasets

    source = datasets.load_from_disk(str(inputs.labelled_saved))
    info = describe(str(inputs.labelled_saved), "text")
    assert reads_in_place(info, SEQ_LEN) and not reads_in_place(info, SEQ_LEN * 2)
    rows = ArrowRows(inputs.labelled_saved, seq_len=SEQ_LEN, eos_id=0, vocab_size=2048)
    assert len(rows) == len(source) and rows.has_loss_mask
    last = len(rows) - 1
    np.testing.assert_array_equal(rows.row(last), source[last]["input_ids"])
    assert rows.row_mask(last).tolist() == [0] * (SEQ_LEN // 2) + [1] * (SEQ_LEN // 2)
    plain = ArrowRows(inputs.tokens_saved, seq_len=SEQ_LEN, eos_id=0, vocab_size=2048)
    assert not plain.has_loss_mask and plain.row_mask(0) is None


def test_rows_of_another_length_or_vocabulary_are_refused_naming_the_place(inputs):
    with pytest.raises(ValueError, match=rf"tokens_saved: input_ids rows of {SEQ_LEN} to {SEQ_LEN} tokens, but "
                                         rf"training.seq_len is {SEQ_LEN * 2}"):
        ArrowRows(inputs.tokens_saved, seq_len=SEQ_LEN * 2, eos_id=0, vocab_size=2048)
    rows = ArrowRows(inputs.tokens_saved, seq_len=SEQ_LEN, eos_id=0, vocab_size=64)
    with pytest.raises(ValueError, match=r"tokens_saved row 0: token id \d+ is beyond model.vocab_size \(64\)"):
        rows.row(0)


def test_a_dataset_dict_folder_names_its_splits(inputs, tmp_path):
    import datasets

    splits = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": ["a"]}),
                                   "test": datasets.Dataset.from_dict({"text": ["b"]})})
    splits.save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(StoreError, match=r"holds a DatasetDict \(splits test, train\); point at one split, e.g. "):
        describe(str(tmp_path / "dd"), "text")


def _upload(client, folder, bucket: str, prefix: str) -> None:
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(folder).as_posix()}")


def test_s3_inputs_stream_to_the_same_rows_as_local_ones(inputs, aws, tmp_path):
    client = boto3.client("s3")
    client.create_bucket(Bucket="data", CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    _upload(client, inputs.tokens_saved, "data", "tokens")
    _upload(client, inputs.text_parquet, "data", "text")
    client.upload_file(str(inputs.root / "sft.parquet"), "data", "sft/train.parquet")

    tokens = describe("s3://data/tokens", "text")
    assert (tokens.layout, tokens.schema, tokens.fixed_rows) == (Layout.SAVED, Schema.TOKENS, SEQ_LEN)
    assert not reads_in_place(tokens, SEQ_LEN)  # on S3 the rows stream into packed shards
    got, _ = _rows(pack_input(tokens, _job(), tmp_path / "s3"))
    np.testing.assert_array_equal(got, ArrowRows(inputs.tokens_saved, seq_len=SEQ_LEN, eos_id=0,
                                                 vocab_size=2048)._rows["input_ids"])
    for uri, local, job in (("s3://data/text", "text_parquet", _job()), ("s3://data/sft/train.parquet", "sft.parquet",
                                                                          _job("sft"))):
        from_s3 = _rows(pack_input(describe(uri, "text"), job, tmp_path / "s3"))
        from_disk = _rows(pack_input(describe(str(inputs.root / local), "text"), job, tmp_path / "local"))
        for a, b in zip(from_s3, from_disk, strict=True):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(StoreError, match=r"s3://data/nothing does not exist"):
        describe("s3://data/nothing", "text")
    with pytest.raises(StoreError, match=r"s3://missing-bucket/x: cannot list it \(.*\); check the URI"):
        describe("s3://missing-bucket/x", "text")
