"""Hugging Face export round trip: the exported folder computes what the training model computed,
and a new run continues from it (loaded shard by shard into a tensor-parallel model)."""

import pytest
import torch


@pytest.fixture(scope="module")
def trained(tmp_path_factory, launch):
    out = tmp_path_factory.mktemp("trained")
    result = launch(out, "training.max_steps=2", "training.checkpoint.every_n_steps=0",
                        "parallelism.tp=2", "parallelism.sequence_parallel=true")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


def test_exported_weights_and_logits_equal_the_checkpoint(trained):
    from llm_launch.launcher.jobfile import read_job
    from llm_launch.train.gpu.export import model_from_checkpoint
    from llm_launch.train.gpu.stage import CausalLMStage
    from transformers import AutoModelForCausalLM

    job = read_job(trained / "job.yaml")
    exported = AutoModelForCausalLM.from_pretrained(trained / "hf_model").eval()
    from_checkpoint = model_from_checkpoint(trained / "checkpoints" / "step_00000002", job.model).eval()
    for name, tensor in from_checkpoint.state_dict().items():
        assert torch.equal(tensor, exported.state_dict()[name]), name
    ids = torch.randint(4, 2048, (2, 64), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        engine_logits = CausalLMStage(from_checkpoint, list(range(job.model.num_layers)), first=True, last=True)(ids)
        hf_logits = exported(ids).logits
    torch.testing.assert_close(engine_logits, hf_logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layout", [["parallelism.tp=2"], ["parallelism=ddp"]], ids=["tp2", "ddp2"])
def test_a_new_run_continues_from_the_export(layout, trained, tmp_path, launch, records):
    from llm_launch.train.data.loader import StepBatches
    from llm_launch.train.data.packed import PackedDataset
    from transformers import AutoModelForCausalLM

    result = launch(tmp_path, "training.max_steps=1", f"model.pretrained_path={trained / 'hf_model'}", *layout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    first_loss = records(tmp_path)[1]["loss"]

    packed = next(p for p in (tmp_path / "data").iterdir() if p.name.startswith("train"))
    rows = StepBatches(PackedDataset.open(packed), seed=1234, global_batch=8, micro_batch=8, dp_rank=0,
                       dp_size=1).micro_batches(0)[0][0]
    model = AutoModelForCausalLM.from_pretrained(trained / "hf_model").eval()
    with torch.no_grad():
        expected = model(input_ids=rows, labels=rows).loss.item()
    assert first_loss == pytest.approx(expected, rel=1e-5)


def test_eval_of_the_export_in_a_pipeline_equals_the_runs_own_validation(trained, tmp_path, launch):
    import json

    records = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    final_val = [r for r in records if "val_loss" in r][-1]["val_loss"]  # later records: checkpoint stalls, goodput
    result = launch(tmp_path, "task=eval", f"model.pretrained_path={trained / 'hf_model'}",
                        "parallelism.pp=2")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    evaluated = json.loads((tmp_path / "eval.json").read_text())
    assert evaluated["val_loss"] == pytest.approx(final_val, rel=1e-5)
    assert evaluated["val_ppl"] == pytest.approx(2.718281828 ** final_val, rel=1e-4)


def test_the_export_writes_no_progress_bar_into_the_log(tmp_path, capfd):
    """transformers' "Writing model shards" bar leaked into every export's log (issue 23)."""
    from llm_launch.launcher import PROJECT_ROOT
    from llm_launch.launcher.config.schema import ModelConfig
    from llm_launch.train.gpu.export import write_hf_folder
    from llm_launch.train.model import build_model
    from transformers.utils import logging as hf_logging

    tiny = ModelConfig(name="t", vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    hf_logging.enable_progress_bar()
    final = write_hf_folder(build_model(tiny, seed=0), str(PROJECT_ROOT / "data" / "sample" / "tokenizer"),
                            tmp_path / "hf_model")
    out, err = capfd.readouterr()
    assert (final / "model.safetensors").is_file()
    assert "Writing model shards" not in out + err and "\r" not in out + err
    assert hf_logging.is_progress_bar_enabled()  # the setting is restored
