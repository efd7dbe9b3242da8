"""HF -> NxD -> HF for a tiny GQA Llama (8 query heads, 2 KV heads) at TP 1, 2, 4, 8 and PP 1, 2:
the round trip is exact, and a forward over the shards computed as NxD's parallel layers do
equals the full model's logits."""

from __future__ import annotations

import json
import zipfile

import pytest
import torch
from convert_helpers import convert
from llm_launch.train.convert.layout import ModelShape, ShardLayout, default_kv_replicator, nxd_shard_name
from safetensors.torch import load_file
from sharded_reference import sharded_logits
from transformers import AutoModelForCausalLM

SHAPE = ModelShape(vocab_size=256, hidden_size=64, intermediate_size=128, num_layers=4, num_heads=8,
                   num_kv_heads=2, head_dim=8)
LAYOUTS = [(tp, pp, hw) for tp in (1, 2, 4, 8) for pp in (1, 2) for hw in ("trn1", "trn2") if tp > 2 or hw == "trn1"]

def _load_shards(folder, tp, pp):
    return {(t, p): torch.load(folder / "model" / nxd_shard_name(t, p), weights_only=True)
            for t in range(tp) for p in range(pp)}

def _layout_id(case):
    tp, pp, hw = case
    return f"tp{tp}-pp{pp}-{hw}"

@pytest.mark.parametrize("case", LAYOUTS, ids=_layout_id)
@pytest.mark.parametrize("fused", [False, True], ids=["qkv", "fused"])
def test_round_trip_exact_and_sharded_forward_matches(tiny_hf, tmp_path, case, fused):
    tp, pp, hw = case
    folder, model = tiny_hf
    nxd, back = tmp_path / "nxd", tmp_path / "back"
    flag = "--fused-qkv" if fused else "--no-fused-qkv"
    assert convert("hf-to-nxd", "-i", folder, "-o", nxd, "--tp", tp, "--pp", pp, "--hw", hw, flag) == 0
    assert sorted(p.name for p in (nxd / "model").iterdir()) == sorted(
        nxd_shard_name(t, p) for t in range(tp) for p in range(pp))
    assert convert("nxd-to-hf", "-i", nxd, "-o", back) == 0  # layout and config recorded by hf-to-nxd

    original, restored = load_file(folder / "model.safetensors"), load_file(back / "model.safetensors")
    assert restored.keys() == original.keys()
    for key, tensor in original.items():
        assert torch.equal(restored[key], tensor), key

    layout = ShardLayout(tp=tp, pp=pp, kv_replicator=default_kv_replicator(2, tp), hw=hw, fused_qkv=fused)
    ids = torch.randint(0, SHAPE.vocab_size, (2, 12), generator=torch.Generator().manual_seed(tp * 10 + pp))
    with torch.no_grad():
        expected = model(input_ids=ids).logits
        got = sharded_logits(_load_shards(nxd, tp, pp), SHAPE, layout, ids)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)  # fp32; only summation order differs

def test_pp_slices_embedding_norm_and_lm_head(tiny_hf, tmp_path):
    folder, _ = tiny_hf
    assert convert("hf-to-nxd", "-i", folder, "-o", tmp_path / "nxd", "--tp", 2, "--pp", 2) == 0
    shards = _load_shards(tmp_path / "nxd", 2, 2)
    for tp_rank in range(2):
        first, last = shards[(tp_rank, 0)], shards[(tp_rank, 1)]
        assert "model.embed_tokens.weight" in first and "model.embed_tokens.weight" not in last
        assert {"model.norm.weight", "lm_head.weight"} <= last.keys()
        assert not {"model.norm.weight", "lm_head.weight"} & first.keys()
        assert {k.split(".")[2] for k in first if k.startswith("model.layers.")} == {"0", "1"}
        assert {k.split(".")[2] for k in last if k.startswith("model.layers.")} == {"2", "3"}  # global indices
        assert first["model.embed_tokens.weight"].shape == (128, 64)
        assert first["model.layers.0.mlp.gate_up_proj.weight"].shape == (128, 64)  # gate and up halves
        assert first["model.layers.0.mlp.down_proj.weight"].shape == (64, 64)  # split on dim 1
        assert first["model.layers.0.self_attn.o_proj.weight"].shape == (64, 32)

@pytest.mark.parametrize("tp,threads", [(4, 1), (8, 2)])
def test_each_shard_file_holds_only_its_own_bytes(tiny_hf, tmp_path, tp, threads):
    """A row slice of a HF tensor views the whole tensor; torch.save would write all of it into every shard."""
    folder, _ = tiny_hf
    assert convert("hf-to-nxd", "-i", folder, "-o", tmp_path / "nxd", "--tp", tp, "--threads", threads) == 0
    for (tp_rank, _), state in _load_shards(tmp_path / "nxd", tp, 1).items():
        path = tmp_path / "nxd" / "model" / nxd_shard_name(tp_rank, 0)
        own = sum(t.numel() * t.element_size() for t in state.values())
        with zipfile.ZipFile(path) as archive:  # one record per tensor, each exactly its bytes
            records = [info.file_size for info in archive.infolist() if "/data/" in info.filename]
        assert len(records) == len(state) and sum(records) == own, path.name
        overhead = path.stat().st_size - own  # zip headers, page-aligned records, the pickled index
        assert 0 < overhead < 8192 + (4096 + 256) * len(state), (path.name, own, path.stat().st_size)
        loaded = torch.load(path, weights_only=True, mmap=True)  # torch.load reads files written without CRC32
        assert all(torch.equal(loaded[k], state[k]) for k in state)
        assert all(loaded[k].untyped_storage().data_ptr() % 4096 == 0 for k in state)  # records start on pages


def test_gate_up_fusion_is_per_rank_gate_then_up(tiny_hf, tmp_path):
    folder, model = tiny_hf
    assert convert("hf-to-nxd", "-i", folder, "-o", tmp_path / "nxd", "--tp", 2) == 0
    rank1 = _load_shards(tmp_path / "nxd", 2, 1)[(1, 0)]
    mlp = model.model.layers[3].mlp
    expected = torch.cat([mlp.gate_proj.weight[64:], mlp.up_proj.weight[64:]])
    assert torch.equal(rank1["model.layers.3.mlp.gate_up_proj.weight"], expected)

def test_output_loads_with_from_pretrained_and_matches(tiny_hf, tmp_path):
    folder, model = tiny_hf
    assert convert("hf-to-nxd", "-i", folder, "-o", tmp_path / "nxd", "--tp", 4, "--pp", 2, "--hw", "trn2") == 0
    assert convert("nxd-to-hf", "-i", tmp_path / "nxd", "-o", tmp_path / "hf", "--max-shard-size", "40KB") == 0
    index = json.loads((tmp_path / "hf" / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1  # sharded as save_pretrained shards
    for name in set(index["weight_map"].values()):  # the header is padded so the data starts on a page
        with (tmp_path / "hf" / name).open("rb") as handle:
            assert (8 + int.from_bytes(handle.read(8), "little")) % 4096 == 0
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    ids = torch.arange(10).unsqueeze(0)
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, model(input_ids=ids).logits, rtol=0, atol=0)

def test_sharded_hf_input_gives_the_same_shards(tiny_hf, tmp_path):
    folder, model = tiny_hf
    sharded = tmp_path / "sharded"
    model.save_pretrained(sharded, safe_serialization=True, max_shard_size="50KB")
    assert (sharded / "model.safetensors.index.json").is_file()
    for name, source in (("a", folder), ("b", sharded)):
        assert convert("hf-to-nxd", "-i", source, "-o", tmp_path / name, "--tp", 4) == 0
    a, b = _load_shards(tmp_path / "a", 4, 1), _load_shards(tmp_path / "b", 4, 1)
    for rank in a:
        assert a[rank].keys() == b[rank].keys()
        assert all(torch.equal(a[rank][k], b[rank][k]) for k in a[rank])

def test_bf16_cast(tiny_hf, tmp_path):
    folder, model = tiny_hf
    assert convert("hf-to-nxd", "-i", folder, "-o", tmp_path / "nxd", "--tp", 2, "--dtype", "bf16") == 0
    shard = _load_shards(tmp_path / "nxd", 2, 1)[(0, 0)]
    assert all(t.dtype == torch.bfloat16 for t in shard.values())
    assert convert("nxd-to-hf", "-i", tmp_path / "nxd", "-o", tmp_path / "hf") == 0
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["torch_dtype"] == "bfloat16"
    restored = load_file(tmp_path / "hf" / "model.safetensors")
    assert torch.equal(restored["lm_head.weight"], model.lm_head.weight.detach().to(torch.bfloat16))
