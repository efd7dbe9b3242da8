"""The TP/PP placement rules of NxD's checkpoint converter and GQA layer (train/convert/layout.py), checked on
their own numbers."""

from __future__ import annotations

import torch
from convert_helpers import convert
from llm_launch.train.convert.layout import (
    ModelShape,
    ShardLayout,
    kv_heads_of_rank,
    layer_chunks,
    layout_problems,
    pipeline_cuts,
    pp_rank_of_layer,
    q_heads_of_rank,
)

DOC_EXAMPLE = ModelShape(vocab_size=32000, hidden_size=8192, intermediate_size=28672, num_layers=80, num_heads=64,
                         num_kv_heads=16, head_dim=128)


def _order(shape, layout):
    return [head for rank in range(layout.tp) for head in q_heads_of_rank(shape, layout, rank)]


def test_trn1_interleaved_matches_the_reference_example():
    layout = ShardLayout(tp=64, kv_replicator=4, hw="trn1")
    # KV pattern (K0..K15)(K0..K15)... and Q taken strided: Q0,Q4,...,Q60, Q1,Q5,...
    assert [kv_heads_of_rank(DOC_EXAMPLE, layout, r)[0] for r in range(64)] == list(range(16)) * 4
    assert _order(DOC_EXAMPLE, layout) == [q for start in range(4) for q in range(start, 64, 4)]


def test_trn2_blocked_matches_the_reference_example():
    layout = ShardLayout(tp=64, kv_replicator=4, hw="trn2")
    # KV pattern (K0,K0,K0,K0)(K1,...) and Q in consecutive groups
    assert [kv_heads_of_rank(DOC_EXAMPLE, layout, r)[0] for r in range(64)] == [k for k in range(16) for _ in range(4)]
    assert _order(DOC_EXAMPLE, layout) == list(range(64))


def test_every_rank_attends_with_its_own_group():
    shape = ModelShape(256, 64, 128, 4, 8, 2, 8)
    for hw in ("trn1", "trn2"):
        for tp, m in ((1, 1), (2, 1), (4, 2), (8, 4)):
            layout = ShardLayout(tp=tp, kv_replicator=m, hw=hw)
            assert sorted(_order(shape, layout)) == list(range(8))
            for rank in range(tp):
                groups = {q // 4 for q in q_heads_of_rank(shape, layout, rank)}  # 4 query heads per KV head
                assert groups == set(kv_heads_of_rank(shape, layout, rank)), (hw, tp, rank)


def test_trn1_and_trn2_shards_differ_at_the_same_tp(tiny_hf, tmp_path):
    folder, model = tiny_hf
    for hw in ("trn1", "trn2"):
        assert convert("hf-to-nxd", "-i", folder, "-o", tmp_path / hw, "--tp", 4, "--hw", hw) == 0
    k = model.model.layers[0].self_attn.k_proj.weight.detach()
    trn1 = torch.load(tmp_path / "trn1/model/dp_rank_00_tp_rank_01_pp_rank_00.pt", weights_only=True)
    trn2 = torch.load(tmp_path / "trn2/model/dp_rank_00_tp_rank_01_pp_rank_00.pt", weights_only=True)
    assert torch.equal(trn1["model.layers.0.self_attn.qkv_proj.weight_k"], k[8:16])  # rank 1 -> K1 (interleaved)
    assert torch.equal(trn2["model.layers.0.self_attn.qkv_proj.weight_k"], k[0:8])  # rank 1 -> K0 (blocked)


def test_pipeline_cuts_split_evenly_with_the_remainder_at_the_end():
    assert pipeline_cuts(80, 8) == [f"model.layers.{i}" for i in range(9, 79, 10)]
    assert [len(c) for c in layer_chunks(10, 4)] == [2, 2, 3, 3]
    assert pipeline_cuts(4, 1) == []
    interleaved = ShardLayout(pp=2, virtual_pp=2)
    shape = ModelShape(256, 64, 128, 8, 8, 2, 8)
    assert [pp_rank_of_layer(i, shape, interleaved) for i in range(8)] == [0, 0, 1, 1, 0, 0, 1, 1]


def test_layout_problems_name_the_option():
    shape = ModelShape(250, 64, 128, 4, 8, 2, 8)
    problems = dict(layout_problems(shape, ShardLayout(tp=4, kv_replicator=1)))
    assert "--kv-replicator" in problems and "2" in problems["--kv-replicator"]
    assert "vocab_size 250" in problems["--tp"]
    assert layout_problems(ModelShape(256, 64, 128, 4, 8, 2, 8), ShardLayout(tp=4, kv_replicator=2)) == []
    assert dict(layout_problems(shape, ShardLayout(pp=5)))["--pp"].startswith("pp x virtual_pp = 5 exceeds")
