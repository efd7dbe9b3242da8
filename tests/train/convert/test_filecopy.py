"""Byte ranges moved file to file: in the kernel (copy_file_range) where it can, through memory where the
kernel refuses (another filesystem), with the same bytes either way."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import pytest
import torch
from llm_launch.train.convert.filecopy import FileRange, RangeCopier


def _source(folder: Path, size: int = 3 * 2**20 + 123) -> tuple[Path, bytes]:
    data = os.urandom(size)
    path = folder / "source.bin"
    path.write_bytes(data)
    return path, data


def _copy_pieces(copier: RangeCopier, source: Path, target: Path) -> bytes:
    """Three ranges, out of order and at unaligned offsets, plus a tensor; returns the bytes expected."""
    tensor = torch.arange(1000, dtype=torch.int32)
    data = source.read_bytes()
    src = os.open(source, os.O_RDONLY)
    dst = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        copier.write([FileRange(src, 2 * 2**20 + 7, 2**20), tensor, FileRange(src, 5, 99)], dst, 13)
        copier.copy(FileRange(src, 0, 13), dst, 0)
    finally:
        os.close(src)
        os.close(dst)
    return data[:13] + data[2 * 2**20 + 7:3 * 2**20 + 7] + tensor.numpy().tobytes() + data[5:104]


def test_ranges_and_tensors_land_at_their_offsets_in_the_kernel(tmp_path):
    source, _ = _source(tmp_path)
    copier = RangeCopier()
    expected = _copy_pieces(copier, source, tmp_path / "out.bin")
    assert (tmp_path / "out.bin").read_bytes() == expected
    assert copier.in_kernel and copier.kernel_bytes == 2**20 + 99 + 13  # a plain local filesystem supports it
    assert copier.buffered_bytes == 4000  # the tensor


def test_a_refusing_kernel_falls_back_to_the_same_bytes(tmp_path, monkeypatch):
    source, _ = _source(tmp_path)
    calls = []

    def refuse(*args):
        calls.append(args)
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "copy_file_range", refuse)
    copier = RangeCopier()
    expected = _copy_pieces(copier, source, tmp_path / "out.bin")
    assert (tmp_path / "out.bin").read_bytes() == expected
    assert len(calls) == 1 and not copier.in_kernel  # asked once, then never again
    assert copier.kernel_bytes == 0 and copier.buffered_bytes == 2**20 + 99 + 13 + 4000


def test_another_filesystem_falls_back_for_real(tmp_path):
    """tmpfs to the test folder's filesystem: Linux refuses copy_file_range across filesystems (EXDEV)."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or not os.access(shm, os.W_OK) or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs a writable /dev/shm on another filesystem than the test folder")
    with tempfile.TemporaryDirectory(dir=shm) as other:
        source, _ = _source(Path(other))
        copier = RangeCopier()
        expected = _copy_pieces(copier, source, tmp_path / "out.bin")
    assert (tmp_path / "out.bin").read_bytes() == expected
    assert not copier.in_kernel and copier.buffered_bytes == 2**20 + 99 + 13 + 4000


@pytest.mark.parametrize("in_kernel", [True, False])
def test_a_truncated_input_is_an_error_not_a_short_file(tmp_path, in_kernel):
    source, _ = _source(tmp_path, 1000)
    src = os.open(source, os.O_RDONLY)
    dst = os.open(tmp_path / "out.bin", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        with pytest.raises(OSError, match="ended 100 bytes early"):
            RangeCopier(in_kernel=in_kernel).copy(FileRange(src, 900, 200), dst, 0)
    finally:
        os.close(src)
        os.close(dst)


def test_a_real_error_is_not_swallowed(tmp_path):
    source, _ = _source(tmp_path, 100)
    src = os.open(source, os.O_RDONLY)
    try:
        with pytest.raises(OSError) as raised:
            RangeCopier().copy(FileRange(src, 0, 10), src, 0)  # read-only target
        assert raised.value.errno == errno.EBADF
    finally:
        os.close(src)
