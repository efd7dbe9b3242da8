"""Streaming: conversion reads each byte it writes once, moves whole rows file to file in the kernel
(or through memory where the kernel refuses, with the same result), and holds a few tensors at a time,
never a shard or the model."""

from __future__ import annotations

import errno
import os

import pytest
import torch
from convert_helpers import convert
from llm_launch.train.convert.filecopy import RangeCopier
from llm_launch.train.convert.hf_io import SafetensorsReader
from llm_launch.train.convert.layout import ModelShape, ShardLayout, nxd_shard_name
from llm_launch.train.convert.mapping import hf_shapes
from llm_launch.train.convert.nxd import hf_to_nxd, nxd_to_hf
from llm_launch.train.convert.nxd_archive import open_shards
from safetensors.torch import load_file

SHAPE = ModelShape(vocab_size=256, hidden_size=64, intermediate_size=128, num_layers=4, num_heads=8,
                   num_kv_heads=2, head_dim=8)


def _shards(folder, tp, pp=1):
    return {(t, p): torch.load(folder / "model" / nxd_shard_name(t, p), weights_only=True)
            for t in range(tp) for p in range(pp)}


def _refuse(*args):
    raise OSError(errno.EXDEV, "Invalid cross-device link")


def test_reads_slices_moves_rows_in_the_kernel_and_holds_a_few_tensors(tiny_hf, tmp_path):
    folder, _ = tiny_hf
    model_bytes = sum(4 * a * (b[0] if b else 1) for a, *b in hf_shapes(SHAPE).values())
    copier = RangeCopier()
    stats = hf_to_nxd(SafetensorsReader(folder), tmp_path / "out", SHAPE, ShardLayout(tp=2, pp=2), copier=copier)
    assert stats.files == 4
    # Only slices are read: bytes read equal bytes written (norms are replicated, hence read per rank).
    assert stats.bytes_read == stats.bytes_written
    assert stats.bytes_written < model_bytes * 1.01
    # Row slices (embedding, lm_head, q/k/v, gate/up, norms) went file to file; o_proj and down_proj
    # (column slices: 2 x 64 x 64 + 64 x 128 floats per layer) through memory.
    column_bytes = SHAPE.num_layers * 4 * (64 * 64 + 64 * 128)
    assert copier.in_kernel and copier.buffered_bytes == column_bytes
    assert copier.kernel_bytes == stats.bytes_written - column_bytes
    # At most one HF tensor and one shard tensor at a time: here the largest is the embedding (64 KiB).
    assert stats.peak_held_bytes <= 2 * 256 * 64 * 4


@pytest.mark.parametrize("dtype", [None, "bf16"])
def test_without_copy_file_range_the_output_is_the_same(tiny_hf, tmp_path, monkeypatch, dtype):
    folder, _ = tiny_hf
    cast = ("--dtype", dtype) if dtype else ()
    assert convert("hf-to-nxd", "-i", folder, "-o", tmp_path / "kernel", "--tp", 4, *cast) == 0
    assert convert("nxd-to-hf", "-i", tmp_path / "kernel", "-o", tmp_path / "kernel-hf") == 0
    monkeypatch.setattr(os, "copy_file_range", _refuse)
    assert convert("hf-to-nxd", "-i", folder, "-o", tmp_path / "memory", "--tp", 4, *cast) == 0
    assert convert("nxd-to-hf", "-i", tmp_path / "memory", "-o", tmp_path / "memory-hf") == 0
    a, b = _shards(tmp_path / "kernel", 4), _shards(tmp_path / "memory", 4)
    assert all(a[r].keys() == b[r].keys() and all(torch.equal(a[r][k], b[r][k]) for k in a[r]) for r in a)
    original = load_file(folder / "model.safetensors")
    for name in ("kernel-hf", "memory-hf"):
        restored = load_file(tmp_path / name / "model.safetensors")
        assert all(torch.equal(restored[k], v if dtype is None else v.to(torch.bfloat16)) for k, v in original.items())


def test_nxd_to_hf_reads_shards_torch_save_wrote_with_views_and_a_wrapper(tiny_hf, tmp_path):
    """Shards NxD's own save may write: {"model": ...}, CRC32 on, a transposed (non-contiguous) tensor and
    tensors that view one storage at an offset. Rows that are not contiguous in the file go through memory."""
    folder, _ = tiny_hf
    assert convert("hf-to-nxd", "-i", folder, "-o", tmp_path / "nxd", "--tp", 2) == 0
    for rank in range(2):
        path = tmp_path / "nxd" / "model" / nxd_shard_name(rank, 0)
        state = torch.load(path, weights_only=True)
        gate_up = state["model.layers.1.mlp.gate_up_proj.weight"]
        state["model.layers.1.mlp.gate_up_proj.weight"] = gate_up.t().contiguous().t()
        q, k = state["model.layers.2.self_attn.qkv_proj.weight_q"], state["model.layers.2.self_attn.qkv_proj.weight_k"]
        joint = torch.cat([torch.zeros(3, 64), q, k])  # one storage: q at row 3, k after it
        state["model.layers.2.self_attn.qkv_proj.weight_q"] = joint[3:3 + len(q)]
        state["model.layers.2.self_attn.qkv_proj.weight_k"] = joint[3 + len(q):]
        torch.save({"model": state}, path)
    shards, problems = open_shards(tmp_path / "nxd" / "model", ShardLayout(tp=2))
    assert not problems
    assert shards.offsets[(0, 0)]["model.layers.1.mlp.gate_up_proj.weight"] is None  # not contiguous
    copier = RangeCopier()
    (tmp_path / "hf").mkdir()
    nxd_to_hf(shards, tmp_path / "hf", SHAPE, ShardLayout(tp=2), max_shard_bytes=2**30, copier=copier)
    restored, original = load_file(tmp_path / "hf" / "model.safetensors"), load_file(folder / "model.safetensors")
    assert restored.keys() == original.keys() and all(torch.equal(restored[k], v) for k, v in original.items())
    assert copier.kernel_bytes > 0


def test_rows_assembled_a_block_at_a_time_give_the_same_output(tiny_hf, tmp_path, monkeypatch):
    """Column slices and casts are copied and written a block of rows at a time; a block smaller than a
    row, and one that ends mid-tensor, must still give every byte."""
    import llm_launch.train.convert.pages as pages

    folder, _ = tiny_hf
    for name, block in (("whole", 2**20), ("blocks", 100)):
        monkeypatch.setattr(pages, "BLOCK_BYTES", block)
        assert convert("hf-to-nxd", "-i", folder, "-o", tmp_path / name, "--tp", 4, "--dtype", "bf16") == 0
        assert convert("nxd-to-hf", "-i", tmp_path / name, "-o", tmp_path / f"{name}-hf", "--dtype", "fp32") == 0
    a, b = _shards(tmp_path / "whole", 4), _shards(tmp_path / "blocks", 4)
    assert all(a[r].keys() == b[r].keys() and all(torch.equal(a[r][k], b[r][k]) for k in a[r]) for r in a)
    restored = load_file(tmp_path / "blocks-hf" / "model.safetensors")
    for key, value in load_file(folder / "model.safetensors").items():
        assert torch.equal(restored[key], value.to(torch.bfloat16).to(torch.float32)), key


def test_a_shard_archive_that_cannot_be_written_fails_the_conversion_cleanly(tiny_hf, tmp_path, monkeypatch, capsys):
    import llm_launch.train.convert.nxd_archive as archive

    real = archive.write_skeleton

    def fail_on_rank_2(path, spec, known=None):
        if "tp_rank_02" in path.name:
            raise OSError(28, "No space left on device")
        return real(path, spec, known)

    folder, _ = tiny_hf
    monkeypatch.setattr(archive, "write_skeleton", fail_on_rank_2)
    assert convert("hf-to-nxd", "-i", folder, "-o", tmp_path / "nxd", "--tp", 4, "--threads", 2) == 1
    err = capsys.readouterr().err
    assert "dp_rank_00_tp_rank_02_pp_rank_00.pt failed" in err and "No space left on device" in err
    assert not (tmp_path / "nxd").exists() and not list(tmp_path.iterdir())  # nothing left behind


@pytest.mark.parametrize("alignment", [64, 4096])
def test_archives_laid_out_alike_share_their_offsets_and_others_do_not(tmp_path, monkeypatch, alignment):
    """The TP ranks of a stage hold the same tensors: their archives' offsets are read once. An archive whose
    entries sit elsewhere (with 64-byte records, a much longer file name moves every header) is read on its
    own; every offset handed out is the one torch.load finds."""
    import llm_launch.train.convert.nxd_archive as archive

    monkeypatch.setattr(archive, "RECORD_ALIGNMENT", alignment)
    write_skeleton = archive.write_skeleton

    spec = {"a": ((3, 5), torch.float32), "b": ((7,), torch.bfloat16)}
    known: dict = {}
    paths = [tmp_path / "dp_rank_00_tp_rank_00_pp_rank_00.pt", tmp_path / "dp_rank_00_tp_rank_01_pp_rank_00.pt",
             tmp_path / "dp_rank_00_tp_rank_100_pp_rank_00.pt", tmp_path / f"{'x' * 100}.pt"]
    offsets = [write_skeleton(path, spec, known) for path in paths]
    if alignment == 64:
        assert len(known) == 2 and offsets[0] == offsets[1] == offsets[2] != offsets[3]
    else:  # page-sized padding absorbs any file name
        assert len(known) == 1 and all(where == offsets[0] for where in offsets)
    for path, where in zip(paths, offsets, strict=True):
        reserved = torch.load(path, map_location="meta", weights_only=True)
        assert {k: reserved[k].untyped_storage()._checkpoint_offset for k in spec} == where
        assert torch.load(path, weights_only=True, mmap=True)["a"].shape == (3, 5)


def test_a_shard_saved_big_endian_is_refused_not_misread(tiny_hf, tmp_path, capsys):
    """torch.load byte-swaps a file saved on a big-endian machine; views of its bytes cannot, so it is refused."""
    import zipfile

    folder, _ = tiny_hf
    assert convert("hf-to-nxd", "-i", folder, "-o", tmp_path / "nxd", "--tp", 2) == 0
    path = tmp_path / "nxd" / "model" / nxd_shard_name(1, 0)
    torch.save(torch.load(path, weights_only=True), path)  # with CRC32s, so zipfile can copy it
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(tmp_path / "big.pt", "w") as target:
        for info in source.infolist():
            data = b"big" if info.filename.endswith("/byteorder") else source.read(info)
            target.writestr(info.filename, data)
    (tmp_path / "big.pt").replace(path)
    assert convert("nxd-to-hf", "-i", tmp_path / "nxd", "-o", tmp_path / "hf") == 1
    assert "was saved on a big-endian machine" in capsys.readouterr().err
    assert not (tmp_path / "hf").exists()
