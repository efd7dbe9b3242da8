"""Qwen checkpoints through the converters: HF -> DCP -> HF keeps every tensor (q/k/v biases, QK-norm), and NxD,
whose Llama modules have neither, refuses them with one line before writing anything."""

from __future__ import annotations

import pytest
import torch
from convert_helpers import convert
from tiny_checkpoints import make_checkpoint


@pytest.mark.parametrize("name", ["qwen2_5", "qwen3"])
def test_qwen_hf_dcp_hf_round_trip_and_nxd_refused(name, tmp_path, capsys):
    from safetensors.torch import load_file

    source = make_checkpoint(name, tmp_path / name)
    assert convert("hf-to-dcp", "-i", source, "-o", tmp_path / "dcp") == 0
    assert convert("dcp-to-hf", "-i", tmp_path / "dcp", "-o", tmp_path / "hf", "--config", source / "config.json") == 0
    before, after = load_file(source / "model.safetensors"), load_file(tmp_path / "hf" / "model.safetensors")
    assert any(k.endswith("q_proj.bias") or k.endswith("q_norm.weight") for k in after)
    assert set(after) == set(before) and all(torch.equal(before[k], after[k]) for k in before)
    assert convert("hf-to-nxd", "-i", source, "-o", tmp_path / "nxd", "--tp", "2") == 2
    assert not (tmp_path / "nxd").exists()
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "NxD" in errors[0], errors


@pytest.mark.parametrize("name", ["llama31", "mistral"])
def test_llama_variants_hf_nxd_hf_keep_weights_and_config(name, tmp_path):
    """Llama 3.1 (rope scaling, its own special tokens) and Mistral through NxD shards and back: every tensor, and
    the source's config.json field for field; torch_dtype is the one field the converter rewrites (to the dtype
    it wrote)."""
    import json

    from safetensors.torch import load_file

    source = make_checkpoint(name, tmp_path / name)
    assert convert("hf-to-nxd", "-i", source, "-o", tmp_path / "nxd", "--tp", 2, "--pp", 2) == 0
    assert convert("nxd-to-hf", "-i", tmp_path / "nxd", "-o", tmp_path / "hf") == 0
    before, after = load_file(source / "model.safetensors"), load_file(tmp_path / "hf" / "model.safetensors")
    assert set(after) == set(before) and all(torch.equal(before[k], after[k]) for k in before)
    config, back = (json.loads((f / "config.json").read_text()) for f in (source, tmp_path / "hf"))
    assert back.pop("torch_dtype") == "float32" and config.pop("torch_dtype") == "bfloat16"
    assert back == config
