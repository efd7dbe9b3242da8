"""The pretrained config.json is the truth (llm_launch.launcher.pretrained_config): the launcher fills the model
section from it or refuses what contradicts it, the job builds the model from it, and the export writes it back.
Tiny published-style checkpoints of every family (tests/tiny_checkpoints.py)."""

from __future__ import annotations

import json

import pytest
from composed_job import compose_job
from llm_launch.launcher.problems import JobProblems
from tiny_checkpoints import FAMILIES, SAMPLE_TOKENIZER, make_checkpoint


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {name: make_checkpoint(name, root / name) for name in FAMILIES}


def _pretrained_job(folder, *overrides, tmp_path):
    return compose_job(["model=pretrained", f"model.pretrained_path={folder}", f"training.data.tokenizer_path={folder}",
                        *overrides], tmp_path / "out")


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_model_pretrained_fills_every_field_and_the_counts_are_transformers(name, checkpoints, tmp_path):
    from llm_launch.launcher.model_math import param_counts
    from transformers import AutoModelForCausalLM

    job = _pretrained_job(checkpoints[name], tmp_path=tmp_path)
    source = json.loads((checkpoints[name] / "config.json").read_text())
    assert job.model.name == name and job.model.family == FAMILIES[name][0]
    assert (job.model.hidden_size, job.model.rope_theta, job.model.tie_word_embeddings) == \
        (source["hidden_size"], source["rope_theta"], source["tie_word_embeddings"])
    assert job.model.rope_scaling == source["rope_scaling"]
    model = AutoModelForCausalLM.from_pretrained(checkpoints[name])
    unique = {id(p): p.numel() for p in model.parameters()}  # a tied lm_head counts once
    assert param_counts(job.model).total == sum(unique.values())


def test_a_recipe_that_contradicts_the_file_is_one_line_per_field(checkpoints, tmp_path):
    with pytest.raises(JobProblems) as caught:
        compose_job([f"model.pretrained_path={checkpoints['llama31']}", "model.vocab_size=2048"], tmp_path / "out")
    lines = {p.field: p.message for p in caught.value.problems}
    assert "says 256 but" in lines["model.hidden_size"] and "says 64" in lines["model.hidden_size"]
    assert "set model.hidden_size=64" in lines["model.hidden_size"]
    assert "10000.0 but" in lines["model.rope_theta"] and "500000.0" in lines["model.rope_theta"]
    assert "rope_type:llama3" in lines["model.rope_scaling"]
    assert "model.vocab_size" not in lines  # agrees with the file


def _plan(tmp_path, *overrides):
    """llm-launch action=plan in a fresh interpreter: (exit code, its error lines)."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "llm_launch.launcher.cli", "action=plan",
                             f"output_dir={tmp_path / 'out'}", *overrides], capture_output=True, text=True, timeout=300)
    return result.returncode, [line for line in result.stderr.splitlines() if line.startswith("  error:")]


def test_command_line_values_are_checked_against_the_file_under_model_pretrained(checkpoints, tmp_path):
    code, errors = _plan(tmp_path, "model=pretrained", f"model.pretrained_path={checkpoints['qwen3']}",
                         f"training.data.tokenizer_path={checkpoints['qwen3']}", "model.hidden_size=128",
                         "model.rope_theta=10000", "model.vocab_size=4096")
    assert code == 2
    assert [line.split(":")[1].strip() for line in errors] == ["model.vocab_size", "model.hidden_size",
                                                               "model.rope_theta"], errors
    assert all("the command line says" in line for line in errors)


def test_contradiction_exits_2_before_anything_runs(checkpoints, tmp_path):
    code, errors = _plan(tmp_path, f"model.pretrained_path={checkpoints['qwen2_5']}", "model=qwen2_5_0_5b")
    assert code == 2, errors
    assert any(line.startswith("  error: model.hidden_size: the model group qwen2_5_0_5b says 896 but") for line in errors)
    assert any(line.startswith("  error: model.vocab_size: the model group qwen2_5_0_5b says 151936") for line in errors)
    assert not (tmp_path / "out" / "plan.json").exists()


def test_qwen_and_biases_are_refused_on_nxd(tmp_path):
    from llm_launch.launcher.validate import validate

    for model, key in (("qwen3_8b", "model.family"), ("qwen2_5_7b", "model.family")):
        job = compose_job(["recipe=llama3_8b_cpt_trn1", f"model={model}"], tmp_path / "out")
        problems = [p for p in validate(job)[0].problems if p.field == key]
        assert len(problems) == 1 and "NxD" in problems[0].message, problems


def test_the_job_refuses_a_model_section_that_contradicts_the_file_at_start(checkpoints, tmp_path):
    """A folder the launcher could not read (a SageMaker channel) is checked by the job when it builds the model."""
    from dataclasses import replace

    from llm_launch.train.errors import JobError
    from llm_launch.train.model import hf_config

    job = _pretrained_job(checkpoints["llama31"], tmp_path=tmp_path)
    assert hf_config(job.model).rope_parameters["rope_type"] == "llama3"
    with pytest.raises(JobError) as caught:
        hf_config(replace(job.model, rope_theta=10000.0, rope_scaling=None))
    lines = str(caught.value).splitlines()
    assert len(lines) == 3 and lines[1].startswith("  model.rope_theta:") and lines[2].startswith("  model.rope_scaling:")


def test_from_scratch_special_tokens_come_from_the_tokenizer(tmp_path):
    """The sample tokenizer's own ids are 0/1/2 (what was hard-coded), so a copy names other tokens."""
    import shutil

    from llm_launch.train.convert.spec import model_group
    from llm_launch.train.model import hf_config

    shutil.copytree(SAMPLE_TOKENIZER, tmp_path / "tok")
    settings = json.loads((tmp_path / "tok" / "tokenizer_config.json").read_text())
    settings.update(bos_token="</s>", eos_token="<unk>", pad_token="<s>")
    (tmp_path / "tok" / "tokenizer_config.json").write_text(json.dumps(settings))
    config = hf_config(model_group("tiny_llama"), str(tmp_path / "tok"))
    assert (config.bos_token_id, config.eos_token_id, config.pad_token_id) == (1, 3, 0)
