"""DCP checkpoints of the GPU engine (train/gpu/checkpoint.py) <-> Hugging Face, exactly."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from convert_helpers import convert, tiny_model
from llm_launch.train.gpu.checkpoint import save_checkpoint
from safetensors.torch import load_file


def _engine_checkpoint(root, model):
    """A real checkpoint of the GPU engine: model + AdamW state + scheduler, `latest` pointer."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(input_ids=torch.arange(8).unsqueeze(0), labels=torch.arange(8).unsqueeze(0)).loss.backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    dist.init_process_group("gloo", init_method=f"file://{root.parent / 'store'}", rank=0, world_size=1)
    try:
        save_checkpoint(root, 3, model, optimizer, scheduler, rank=0, keep_last=2)
    finally:
        dist.destroy_process_group()


def test_dcp_to_hf_and_back_is_exact(tmp_path):
    model = tiny_model(seed=3).train()
    root = tmp_path / "checkpoints"
    _engine_checkpoint(root, model)
    expected = {k: v.detach().clone() for k, v in model.state_dict().items()}
    assert convert("dcp-to-hf", "-i", root, "-o", tmp_path / "hf", "--config", _config(tmp_path, model)) == 0
    restored = load_file(tmp_path / "hf" / "model.safetensors")
    assert restored.keys() == expected.keys()
    assert all(torch.equal(restored[k], expected[k]) for k in expected)

    assert convert("hf-to-dcp", "-i", tmp_path / "hf", "-o", tmp_path / "dcp") == 0
    target = {"model": {k: torch.zeros_like(v) for k, v in expected.items()}}
    dcp.load(target, checkpoint_id=str(tmp_path / "dcp"), no_dist=True)
    assert all(torch.equal(target["model"][k], expected[k]) for k in expected)


def test_dcp_shape_mismatch_is_named(tmp_path, capsys):
    model = tiny_model(seed=4)
    root = tmp_path / "checkpoints"
    _engine_checkpoint(root, model)
    other = tiny_model(intermediate_size=96)
    assert convert("dcp-to-hf", "-i", root, "-o", tmp_path / "hf", "--config", _config(tmp_path, other)) == 2
    err = capsys.readouterr().err
    assert "model.layers.0.mlp.gate_proj.weight: has shape [128, 64]" in err and "[96, 64]" in err
    assert not (tmp_path / "hf").exists()


def _config(tmp_path, model):
    path = tmp_path / "config.json"
    model.config.to_json_file(path)
    return path


def test_dcp_to_hf_gets_the_sources_tokenizer(tmp_path):
    """The converted folder loads with AutoTokenizer when the source has a tokenizer (issue 23): here the
    folder of --config, as for a job that started from a Hugging Face folder."""
    import shutil

    from llm_launch.launcher import PROJECT_ROOT
    from transformers import AutoTokenizer

    model = tiny_model(seed=3).train()
    root = tmp_path / "checkpoints"
    _engine_checkpoint(root, model)
    config = _config(tmp_path, model)
    shutil.copytree(PROJECT_ROOT / "data" / "sample" / "tokenizer", config.parent, dirs_exist_ok=True)
    assert convert("dcp-to-hf", "-i", root, "-o", tmp_path / "hf", "--config", config) == 0
    assert (tmp_path / "hf" / "tokenizer.json").read_bytes() == (config.parent / "tokenizer.json").read_bytes()
    assert AutoTokenizer.from_pretrained(tmp_path / "hf")("In the beginning").input_ids
