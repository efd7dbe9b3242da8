"""Plan-time checks of the model and tokenizer files: damaged files are named before any rank loads them."""

import json
import shutil

import pytest
import torch
from composed_job import compose_job
from llm_launch.launcher import PROJECT_ROOT
from llm_launch.launcher.local_files import pretrained_problems, tokenizer_problems
from llm_launch.train.model import hf_config
from safetensors.torch import save_file

TOKENIZER = PROJECT_ROOT / "data" / "sample" / "tokenizer"


@pytest.fixture
def model_dir(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    hf_config(compose_job([], tmp_path / "out").model).save_pretrained(folder)  # the default recipe's model
    save_file({"a": torch.zeros(64, 64)}, folder / "model-00001-of-00002.safetensors")
    save_file({"b": torch.ones(8)}, folder / "model-00002-of-00002.safetensors")
    weight_map = {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return folder


def test_intact_model_and_tokenizer_pass(model_dir):
    assert pretrained_problems(model_dir) == []
    assert tokenizer_problems(TOKENIZER) == []


def test_truncated_shard_is_named(model_dir):
    shard = model_dir / "model-00001-of-00002.safetensors"
    shard.write_bytes(shard.read_bytes()[:-100])
    (problem,) = pretrained_problems(model_dir)
    assert problem.startswith(f"{shard}: not a readable safetensors file (") and "truncated or damaged" in problem


def test_index_naming_a_missing_file_or_tensor_is_named(model_dir):
    index = json.loads((model_dir / "model.safetensors.index.json").read_text())
    index["weight_map"]["c"] = "model-00002-of-00002.safetensors"
    index["weight_map"]["d"] = "model-00003-of-00003.safetensors"
    (model_dir / "model.safetensors.index.json").write_text(json.dumps(index))
    problems = pretrained_problems(model_dir)
    assert any("model-00003-of-00003.safetensors: missing, but model.safetensors.index.json lists it" in p
               for p in problems)
    assert any("lacks 1 tensors model.safetensors.index.json places in it (first: c)" in p for p in problems)


def test_tokenizer_json_that_is_not_json_is_named(tmp_path):
    folder = tmp_path / "tok"
    shutil.copytree(TOKENIZER, folder)
    (folder / "tokenizer.json").write_text('{"model": {"vocab": ')
    (problem,) = tokenizer_problems(folder)
    assert problem.startswith(f"{folder / 'tokenizer.json'}: not valid JSON (Expecting value at line 1 column 21)")
    (folder / "tokenizer.json").write_text('{"model": "unterminated')
    (problem,) = tokenizer_problems(folder)
    assert "(Unterminated string starting at line 1 column 11)" in problem  # json's message ends in "at": not twice


def test_plan_reports_both_with_their_keys(cli, tmp_path, model_dir):
    folder = tmp_path / "tok"
    shutil.copytree(TOKENIZER, folder)
    (folder / "tokenizer.json").write_text("not json")
    (model_dir / "model-00002-of-00002.safetensors").write_bytes(b"\x00" * 3)
    result = cli(f"model.pretrained_path={model_dir}", f"training.data.tokenizer_path={folder}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("  error:")]
    assert len(lines) == 2, result.stderr
    assert "error: training.data.tokenizer_path: " in lines[0] and "tokenizer.json: not valid JSON" in lines[0]
    assert "error: model.pretrained_path: " in lines[1] and "model-00002-of-00002.safetensors: not a" in lines[1]
