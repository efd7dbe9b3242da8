"""Streaming: hf-to-nxd reads only each shard's slices (every byte it reads is a byte it writes)
and holds one shard at a time, never the model."""

from __future__ import annotations

from train.convert.hf_io import SafetensorsReader
from train.convert.layout import ModelShape, ShardLayout
from train.convert.mapping import hf_shapes
from train.convert.nxd import hf_to_nxd

SHAPE = ModelShape(vocab_size=256, hidden_size=64, intermediate_size=128, num_layers=4, num_heads=8,
                   num_kv_heads=2, head_dim=8)


def test_reads_slices_and_holds_one_shard(tiny_hf, tmp_path):
    folder, _ = tiny_hf
    model_bytes = sum(4 * a * (b[0] if b else 1) for a, *b in hf_shapes(SHAPE).values())
    reader = SafetensorsReader(folder)
    stats = hf_to_nxd(reader, tmp_path / "out", SHAPE, ShardLayout(tp=2, pp=2))
    assert stats.files == 4
    # Only slices are read: bytes read equal bytes written (norms are replicated, hence read per rank).
    assert stats.bytes_read == stats.bytes_written
    assert stats.bytes_written < model_bytes * 1.01
    # One shard (about a quarter of the model here) is held at a time.
    assert stats.peak_held_bytes < model_bytes * 0.3
