"""A checkpoint resumes only into the same job (launcher/job_record.py): a changed model is refused naming the field
and both values; a changed tokenizer, data, seq_len or global batch is refused unless allowed, then announced; a
changed layout is announced. At plan time for local runs, from the record in the checkpoint `latest` names."""

from __future__ import annotations

import json
import shutil

import pytest
from composed_job import compose_job
from llm_launch.launcher import PROJECT_ROOT
from llm_launch.launcher.job_record import compare, data_fingerprint, job_record

LAYOUT = {"world_size": 2, "tp": 1, "pp": 1, "dp": 2}


def _record(tmp_path, *overrides, layout=LAYOUT):
    return job_record(compose_job(list(overrides), tmp_path / "out"), layout)


def test_the_same_job_resumes_without_a_word(tmp_path):
    assert compare(_record(tmp_path), _record(tmp_path), [], "ck") == ([], [])


@pytest.mark.parametrize(("override", "key", "old", "new"), [
    ("model.num_layers=2", "model.num_layers", "4", "2"),
    ("model.hidden_size=128", "model.hidden_size", "256", "128"),
    ("model.tie_word_embeddings=true", "model.tie_word_embeddings", "False", "True"),
    ("training.lora.enabled=true", "training.lora.enabled", "False", "True"),
])
def test_a_changed_model_is_refused_naming_the_field_and_both_values(tmp_path, override, key, old, new):
    refusals, notes = compare(_record(tmp_path), _record(tmp_path, override), ["tokenizer", "data", "seq_len",
                                                                                "global_batch_size"], "ck/step_1")
    assert refusals == [(key, f"ck/step_1 holds a model with {key}={old}, this job has {new}; a checkpoint resumes "
                              f"only into the same model: set {key}={old}, or start a new run in another output_dir "
                              "(or training.checkpoint.dir)")]
    assert notes == []


def _other_tokenizer(tmp_path):
    folder = tmp_path / "tok"
    shutil.copytree(PROJECT_ROOT / "data" / "sample" / "tokenizer", folder)
    (folder / "tokenizer.json").write_text((folder / "tokenizer.json").read_text().replace('"<unk>"', '"<unk2>"'))
    return f"training.data.tokenizer_path={folder}"


def _other_data(tmp_path):
    corpus = tmp_path / "other.jsonl"
    corpus.write_text('{"text": "something else entirely"}\n')
    return f"training.data.train_path={corpus}"


@pytest.mark.parametrize(("name", "key", "change"), [
    ("seq_len", "training.seq_len", lambda tmp: "training.seq_len=128"),
    ("global_batch_size", "training.global_batch_size", lambda tmp: "training.global_batch_size=16"),
    ("tokenizer", "training.data.tokenizer_path", _other_tokenizer),
    ("data", "training.data.train_path", _other_data),
])
def test_changed_tokens_are_refused_unless_allowed_then_announced(tmp_path, name, key, change):
    saved, current = _record(tmp_path), _record(tmp_path, change(tmp_path))
    assert saved[name] != current[name]
    refusals, notes = compare(saved, current, [], "ck/step_1")
    ((refused_key, line),) = refusals
    assert refused_key == key and notes == []
    assert line.startswith("ck/step_1 was trained with ") and f" {saved[name]}, this job has {current[name]}; " in line
    assert f"set training.checkpoint.allow_changes=[{name}] to continue anyway" in line and "\n" not in line
    assert compare(saved, current, [name], "ck/step_1") == ([], [
        f"resuming ck/step_1 with {line.split(' was trained with ')[1].split(f' {saved[name]},')[0]} changed from "
        f"{saved[name]} to {current[name]} (training.checkpoint.allow_changes names {name})"])


def test_a_changed_layout_is_announced_and_an_older_record_is_compared_where_it_can(tmp_path):
    saved = _record(tmp_path)
    current = _record(tmp_path, layout={"world_size": 4, "tp": 2, "pp": 1, "dp": 2})
    assert compare(saved, current, [], "ck") == ([], [
        "resuming ck, written by world size 2 (tp 1, pp 1, dp 2), with world size 4 (tp 2, pp 1, dp 2): DCP reshards it"])
    older = {"model": {"model.num_layers": 4}, "seq_len": 256}  # fewer fields: only those are compared
    assert compare(older, _record(tmp_path), [], "ck") == ([], [])
    assert data_fingerprint("s3://bucket/data") is None  # not readable here: not compared


def _checkpoint_of(tmp_path, *overrides):
    """A local run's checkpoint folder whose `latest` holds the record of a job composed with overrides."""
    root = tmp_path / "out" / "checkpoints"
    (root / "step_00000002").mkdir(parents=True)
    record = job_record(compose_job([f"output_dir={tmp_path / 'out'}", *overrides], tmp_path / "out"), LAYOUT)
    (root / "step_00000002" / "trainer_state.json").write_text(json.dumps({"step": 2, "job": record}))
    (root / "latest").write_text("step_00000002")
    return root / "step_00000002"


def test_plan_time_refuses_a_resume_into_another_model_and_unallowed_seq_len(cli, tmp_path):
    checkpoint = _checkpoint_of(tmp_path)
    result = cli("model.num_layers=2", "training.seq_len=128")
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("  error:")]
    assert f"  error: model.num_layers: {checkpoint} holds a model with model.num_layers=4, this job has 2; " \
           "a checkpoint resumes only into the same model: set model.num_layers=4, or start a new run in another " \
           "output_dir (or training.checkpoint.dir)" in errors
    assert any(line.startswith(f"  error: training.seq_len: {checkpoint} was trained with training.seq_len 256, "
                               "this job has 128; ") for line in errors)


def test_plan_time_announces_an_allowed_change(cli, tmp_path):
    _checkpoint_of(tmp_path)
    result = cli("training.global_batch_size=16", "training.checkpoint.allow_changes=[global_batch_size]")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    shown = " ".join(part.strip(" │") for part in result.stdout.splitlines())  # the plan table wraps its lines
    assert "training.global_batch_size changed from 8 to 16 (training.checkpoint.allow_changes names " \
           "global_batch_size)" in " ".join(shown.split())


def test_allow_changes_names_only_what_a_resume_may_change(cli, tmp_path):
    result = cli("training.checkpoint.allow_changes=[model]")
    assert result.returncode == 2
    assert "training.checkpoint.allow_changes: 'model' is not a change a resume may make; name any of tokenizer, " \
           "data, seq_len, global_batch_size (a changed model is always refused)" in result.stderr
