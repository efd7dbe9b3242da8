"""Plan-time checks of every data input kind: schema against the task, row length against training.seq_len,
token ids against the tokenizer, S3 inputs (moto_server) and SageMaker channels through their prefix;
one line per problem naming the key."""

from __future__ import annotations

import boto3
import pytest
from llm_launch.launcher.validate import validate
from sample_inputs import SEQ_LEN

TRAIN = "training.data.train_path"


def _problems(job_for, *overrides: str) -> list[str]:
    findings, _ = validate(job_for(*overrides))
    return [str(p) for p in findings.problems]


def _tokens_job(inputs, *overrides: str) -> tuple[str, ...]:
    return (f"{TRAIN}={inputs.tokens_saved}", f"training.data.valid_path={inputs.text_parquet}",
            f"training.seq_len={SEQ_LEN}", *overrides)


def test_every_input_kind_that_fits_the_job_plans_cleanly(sample_inputs, job_for):
    assert _problems(job_for, *_tokens_job(sample_inputs)) == []
    assert _problems(job_for, "recipe=tiny_llama_sft", f"{TRAIN}={sample_inputs.sft_saved}",
                     f"training.data.valid_path={sample_inputs.root / 'sft.parquet'}") == []


@pytest.mark.parametrize(("overrides", "key", "phrase"), [
    (("training.seq_len=128",), TRAIN, f"holds rows of {SEQ_LEN} tokens (input_ids) but training.seq_len is 128; set "
                                       f"training.seq_len={SEQ_LEN}"),
    (("recipe=tiny_llama_sft",), "training.data.valid_path", "holds plain text ('text'); sft needs messages"),
    (("training.data.text_field=body",), "training.data.text_field", "'body' is not a field of "
                                                                     "training.data.valid_path's records (they have "
                                                                     "text)"),
])
def test_an_input_that_does_not_fit_the_job_is_one_line_naming_the_key(sample_inputs, job_for, overrides, key,
                                                                       phrase):
    problems = _problems(job_for, *_tokens_job(sample_inputs), *overrides)
    assert len([p for p in problems if p.startswith(f"{key}: ")]) == 1, problems
    assert any(p.startswith(f"{key}: ") and phrase in p for p in problems), problems


def test_preference_pairs_sft_records_and_foreign_token_ids_are_refused(sample_inputs, job_for, tmp_path):
    import datasets
    from llm_launch.launcher import PROJECT_ROOT

    preference = PROJECT_ROOT / "data" / "sample" / "sft" / "preference.jsonl"
    assert _problems(job_for, f"{TRAIN}={preference}") == [
        f"{TRAIN}: {preference} holds preference pairs (prompt, chosen, rejected); train them with task=dpo "
        "(docs/dpo.md); cpt reads text or input_ids, sft reads messages or instruction/output"]
    assert "holds SFT records" in _problems(job_for, f"{TRAIN}={sample_inputs.sft_saved}")[0]
    datasets.Dataset.from_dict({"input_ids": [[5] * (SEQ_LEN - 1) + [4000]]}).save_to_disk(str(tmp_path / "foreign"))
    problems = _problems(job_for, f"{TRAIN}={tmp_path / 'foreign'}", f"training.seq_len={SEQ_LEN}")
    assert problems == [f"{TRAIN}: {tmp_path / 'foreign'} has token id 4000 in its first rows, beyond model.vocab_size "
                        "(2048); was it tokenized with another tokenizer?"]


def test_packed_rows_of_another_length_are_caught_at_plan_time(job_for, tmp_path):
    from llm_launch.train.data.packed import write_packed

    write_packed(tmp_path / "packed", [[1, 2, 3]] * 40, seq_len=16, eos_id=0, vocab_size=2048)
    assert _problems(job_for, f"{TRAIN}={tmp_path / 'packed'}") == [
        f"{TRAIN}: {tmp_path / 'packed'} holds packed rows of 16 tokens but training.seq_len is 256; set "
        "training.seq_len=16 or pack the data again"]


def test_s3_inputs_and_sagemaker_channels_are_checked_through_s3(sample_inputs, job_for, aws):
    client = boto3.client("s3")
    client.create_bucket(Bucket="data", CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    for path in sorted(sample_inputs.tokens_saved.iterdir()):
        client.upload_file(str(path), "data", f"tokens/{path.name}")
    problems = _problems(job_for, f"{TRAIN}=s3://data/tokens", "training.seq_len=128")
    assert problems == [f"{TRAIN}: s3://data/tokens holds rows of {SEQ_LEN} tokens (input_ids) but training.seq_len "
                        f"is 128; set training.seq_len={SEQ_LEN} or chunk the dataset into 128-token blocks"]
    assert _problems(job_for, f"{TRAIN}=s3://data/tokens", f"training.seq_len={SEQ_LEN}") == []
    channel = job_for("recipe=llama3_8b_cpt_trn1", "cluster.sagemaker.channels.train=s3://data",
                      f"{TRAIN}=/opt/ml/input/data/train/tokens", "training.data.valid_path=null")
    findings, _ = validate(channel)
    assert [str(p) for p in findings.problems if p.field == TRAIN] == [
        f"{TRAIN}: s3://data/tokens holds rows of {SEQ_LEN} tokens (input_ids) but training.seq_len is 8192; set "
        f"training.seq_len={SEQ_LEN} or chunk the dataset into 8192-token blocks"]
    findings, _ = validate(job_for(f"{TRAIN}=s3://no-such-bucket/tokens"))
    assert not [p for p in findings.problems if p.field == TRAIN]
    assert any(w.startswith(f"{TRAIN}: not checked before the job: s3://no-such-bucket/tokens: cannot list it")
               for w in findings.warnings), findings.warnings
