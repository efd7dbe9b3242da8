"""What a user of llm-launch-convert relies on: no overwrite without --force, every shape
mismatch named before anything is written, one-line errors, models from our conf/model groups."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from convert_helpers import convert, tiny_model
from llm_launch.launcher import PROJECT_ROOT
from llm_launch.train.convert.layout import nxd_shard_name
from llm_launch.train.convert.nxd import KV_ORDER
from safetensors.torch import load_file, save_file


def test_refuses_to_overwrite_and_force_replaces(tiny_hf, tmp_path, capsys):
    folder, _ = tiny_hf
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert convert("hf-to-nxd", "-i", folder, "-o", out, "--tp", 2) == 2
    err = capsys.readouterr().err
    assert "--output" in err and "--force" in err
    assert (out / "keep.txt").read_text() == "mine" and not (out / "model").exists()
    assert convert("hf-to-nxd", "-i", folder, "-o", out, "--tp", 2, "--force") == 0
    assert not (out / "keep.txt").exists() and len(list((out / "model").iterdir())) == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_every_shape_mismatch_is_named_before_anything_is_written(tiny_hf, tmp_path):
    folder, _ = tiny_hf
    bad = tmp_path / "bad"
    bad.mkdir()
    state = load_file(folder / "model.safetensors")
    state["model.layers.1.self_attn.k_proj.weight"] = torch.zeros(24, 64)
    state["model.layers.2.mlp.up_proj.weight"] = torch.zeros(100, 64)
    del state["model.norm.weight"]
    save_file(state, bad / "model.safetensors")
    (bad / "config.json").write_text((folder / "config.json").read_text())
    proc = subprocess.run([sys.executable, "-m", "llm_launch.train.convert", "hf-to-nxd", "-i", str(bad), "-o",
                           str(tmp_path / "out"), "--tp", "2"], capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.strip().startswith("error:")]
    assert len(errors) == 3, proc.stderr
    assert any("model.layers.1.self_attn.k_proj.weight" in e and "[24, 64]" in e and "[16, 64]" in e for e in errors)
    assert any("model.layers.2.mlp.up_proj.weight" in e for e in errors)
    assert any("model.norm.weight" in e and "missing" in e for e in errors)
    assert not (tmp_path / "out").exists()


def test_layout_problems_and_missing_config_reported_together(tmp_path, tiny_hf, capsys):
    folder, _ = tiny_hf
    assert convert("hf-to-nxd", "-i", folder, "-o", tmp_path / "o", "--tp", 4, "--kv-replicator", 1) == 2
    assert "--kv-replicator" in capsys.readouterr().err
    assert convert("nxd-to-hf", "-i", tmp_path, "-o", tmp_path / "o2") == 2
    assert "--config" in capsys.readouterr().err


def test_nxd_to_hf_names_wrong_layout_flags(tiny_hf, tmp_path, capsys):
    folder, _ = tiny_hf
    assert convert("hf-to-nxd", "-i", folder, "-o", tmp_path / "nxd", "--tp", 2, "--pp", 2) == 0
    assert convert("nxd-to-hf", "-i", tmp_path / "nxd", "-o", tmp_path / "hf", "--tp", 4, "--pp", 2) == 2
    err = capsys.readouterr().err
    assert "dp_rank_00_tp_rank_02_pp_rank_00.pt: missing" in err
    assert "model.embed_tokens.weight: has shape [128, 64]" in err and "[64, 64]" in err


def test_model_group_and_job_sources(tmp_path):
    from llm_launch.train.convert.spec import model_group, shape_of_model
    from llm_launch.train.model import hf_config

    spec = model_group("tiny_llama")
    torch.manual_seed(0)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_config(hf_config(spec))
    model.save_pretrained(tmp_path / "hf")  # config.json and weights; convert reads the dims from --model
    assert convert("hf-to-nxd", "-i", tmp_path / "hf", "-o", tmp_path / "nxd", "--model", "tiny_llama",
                   "--tp", 8) == 0
    layout = (tmp_path / "nxd" / "nxd_layout.json").read_text()
    assert '"kv_replicator": 2' in layout  # 4 KV heads replicated up to tp 8
    assert convert("nxd-to-hf", "-i", tmp_path / "nxd", "-o", tmp_path / "back", "--model", "tiny_llama") == 0
    restored = load_file(tmp_path / "back" / "model.safetensors")
    assert all(torch.equal(restored[k], v) for k, v in model.state_dict().items())
    assert shape_of_model(spec).num_kv_heads == 4
    assert convert("hf-to-nxd", "-i", tmp_path / "hf", "-o", tmp_path / "x", "--model", "no_such") == 2


def test_tied_embeddings_round_trip(tmp_path):
    model = tiny_model(tie_word_embeddings=True)
    model.save_pretrained(tmp_path / "hf")
    assert "lm_head.weight" not in load_file(tmp_path / "hf" / "model.safetensors")
    assert convert("hf-to-nxd", "-i", tmp_path / "hf", "-o", tmp_path / "nxd", "--tp", 2) == 0
    assert convert("nxd-to-hf", "-i", tmp_path / "nxd", "-o", tmp_path / "back") == 0
    assert load_file(tmp_path / "back" / "model.safetensors").keys() == load_file(
        tmp_path / "hf" / "model.safetensors").keys()
    assert convert("hf-to-nxd", "-i", tmp_path / "hf", "-o", tmp_path / "pp", "--tp", 2, "--pp", 2) == 2


def test_console_script_help_documents_model_sources():
    proc = subprocess.run([sys.executable, "-m", "llm_launch.train.convert", "hf-to-nxd", "--help"], capture_output=True,
                          text=True, cwd=PROJECT_ROOT)
    assert proc.returncode == 0
    for text in ("--job", "--model", "--config", "--kv-replicator", "--hw", "--fused-qkv", "--force"):
        assert text in proc.stdout


@pytest.mark.parametrize("written,read", [("trn2", "trn1"), ("trn1", "trn2")])
def test_kv_replicas_read_with_the_wrong_hw_are_refused(tiny_hf, tmp_path, capsys, written, read):
    folder, _ = tiny_hf
    assert convert("hf-to-nxd", "-i", folder, "-o", tmp_path / "nxd", "--tp", 4, "--hw", written) == 0
    assert convert("nxd-to-hf", "-i", tmp_path / "nxd", "-o", tmp_path / "hf", "--hw", read) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1, errors
    assert f"--hw {read} expects K/V replicated {KV_ORDER[read]}" in errors[0]
    assert f"the shards hold them {KV_ORDER[written]}; pass --hw {written}" in errors[0]
    assert not (tmp_path / "hf").exists()
    assert convert("nxd-to-hf", "-i", tmp_path / "nxd", "-o", tmp_path / "hf", "--hw", written) == 0


def test_replicas_in_neither_order_and_differing_norms_are_named(tiny_hf, tmp_path, capsys):
    folder, _ = tiny_hf
    assert convert("hf-to-nxd", "-i", folder, "-o", tmp_path / "nxd", "--tp", 4) == 0
    shard = tmp_path / "nxd" / "model" / nxd_shard_name(1, 0)
    state = torch.load(shard, weights_only=True)
    state["model.layers.2.self_attn.qkv_proj.weight_v"] += 1  # one copy of KV head 1 differs: neither order fits
    torch.save(state, shard)
    assert convert("nxd-to-hf", "-i", tmp_path / "nxd", "-o", tmp_path / "hf") == 2
    err = capsys.readouterr().err
    assert "model.layers.2.self_attn.v_proj.weight" in err and "follow neither order" in err
    state["model.layers.2.self_attn.qkv_proj.weight_v"] -= 1
    state["model.layers.0.input_layernorm.weight"] *= 2
    torch.save(state, shard)
    assert convert("nxd-to-hf", "-i", tmp_path / "nxd", "-o", tmp_path / "hf") == 2
    err = capsys.readouterr().err
    assert "model.layers.0.input_layernorm.weight" in err and "inconsistent" in err


@pytest.mark.parametrize("threads", [2, 64], ids=["a_file_per_thread", "threads_share_files"])
def test_threads_writing_into_several_files_give_the_same_tensors(tiny_hf, tmp_path, threads):
    folder, _ = tiny_hf
    assert convert("hf-to-nxd", "-i", folder, "-o", tmp_path / "nxd", "--tp", 2, "--pp", 2) == 0
    assert convert("nxd-to-hf", "-i", tmp_path / "nxd", "-o", tmp_path / "hf", "--max-shard-size", "100KB",
                   "--threads", threads) == 0
    original = load_file(folder / "model.safetensors")
    restored = {}
    files = list((tmp_path / "hf").glob("*.safetensors"))
    assert (len(files) >= threads) == (threads == 2)  # each way of handing out the work is exercised
    for path in files:
        restored.update(load_file(path))
    assert restored.keys() == original.keys() and all(torch.equal(restored[k], original[k]) for k in original)


def test_nxd_to_hf_default_gives_each_thread_a_file_for_models_over_a_gib():
    from llm_launch.train.convert.cli import threaded_shard_bytes

    gib = 1024 ** 3
    assert threaded_shard_bytes(int(2.2e9), 2) == int(1.1e9)  # the 1.1 B bf16 model: about a file per thread
    assert threaded_shard_bytes(500 * 1024 ** 2, 2) == gib  # small models stay one file
    assert threaded_shard_bytes(16 * 10 ** 9, 2) == 5 * gib  # large ones keep the 5GB default


def test_tokenizer_files_go_through_hf_to_nxd_and_back(tmp_path):
    """nxd-to-hf gives a folder with the source's tokenizer (issue 23), carried by hf-to-nxd's output."""
    import shutil

    model = tiny_model()
    model.save_pretrained(tmp_path / "hf")
    shutil.copytree(PROJECT_ROOT / "data" / "sample" / "tokenizer", tmp_path / "hf", dirs_exist_ok=True)
    assert convert("hf-to-nxd", "-i", tmp_path / "hf", "-o", tmp_path / "nxd", "--tp", 2) == 0
    assert convert("nxd-to-hf", "-i", tmp_path / "nxd", "-o", tmp_path / "back") == 0
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (tmp_path / "back" / name).read_bytes() == (tmp_path / "hf" / name).read_bytes()
