"""Bytes moved from file to file at planned offsets: in the kernel where it can, through memory where not.

Most of a conversion's bytes are contiguous ranges of an input file (a row slice of a
safetensors tensor, one TP rank's rows inside a torch.save record) that land contiguously in
an output file whose layout is known in advance. os.copy_file_range moves such a range inside
the kernel, as a plain `cp` does, without the bytes passing through this process
(https://man7.org/linux/man-pages/man2/copy_file_range.2.html). Where the kernel or filesystem
refuses it (another filesystem: EXDEV; no support: ENOSYS, EOPNOTSUPP; EINVAL), the copier
switches, once and for the rest of the conversion, to pread/pwrite through a small per-thread
buffer. Tensors assembled in memory (column slices, casts) are written with pwrite.
"""

from __future__ import annotations

import errno
import os
import threading
from dataclasses import dataclass
from typing import Any

import torch

FALLBACK_ERRNOS = {errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL, errno.EPERM}
"""copy_file_range failures that mean "not here", not "bad file": copy through memory instead."""
BUFFER_BYTES = 8 * 2**20
"""Per-thread buffer of the fallback copy."""


@dataclass(frozen=True)
class FileRange:
    """nbytes bytes starting at offset of the open file fd."""

    fd: int
    offset: int
    nbytes: int


Part = Any
"""A FileRange, a tensor, or an object with nbytes and write_to(copier, fd, offset) (pages.AssembledRows)."""


def part_bytes(part: Part) -> int:
    return part.numel() * part.element_size() if isinstance(part, torch.Tensor) else part.nbytes


def tensor_bytes(tensor: torch.Tensor) -> memoryview:
    """The bytes of a tensor (only its own, even when it views a larger storage), without a copy
    when it is contiguous."""
    flat = tensor.detach().contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy()) if flat.numel() else memoryview(b"")


def write_at(fd: int, data: memoryview | bytes, offset: int) -> None:
    """All of data at offset (os.pwrite may write less than asked)."""
    view = memoryview(data).cast("B")
    while view.nbytes:
        done = os.pwrite(fd, view, offset)
        view, offset = view[done:], offset + done


class RangeCopier:
    """Copies FileRanges to offsets of other files from any number of threads; counts how the bytes went."""

    def __init__(self, in_kernel: bool = True):
        self.in_kernel = in_kernel and hasattr(os, "copy_file_range")
        """Whether copy_file_range is still tried (False after the first refusal)."""
        self.kernel_bytes = 0
        """Bytes copied inside the kernel."""
        self.buffered_bytes = 0
        """Bytes copied through this process's memory (fallback) or written from tensors."""
        self._local = threading.local()
        self._lock = threading.Lock()

    def _count(self, kernel: int, buffered: int) -> None:
        with self._lock:
            self.kernel_bytes += kernel
            self.buffered_bytes += buffered

    def copy(self, source: FileRange, fd: int, offset: int) -> None:
        """source's bytes to fd at offset."""
        done = 0
        if self.in_kernel:
            try:
                while done < source.nbytes:
                    moved = os.copy_file_range(source.fd, fd, source.nbytes - done, source.offset + done,
                                               offset + done)
                    if moved == 0:
                        raise OSError(errno.EIO, f"input ended {source.nbytes - done} bytes early (truncated file?)")
                    done += moved
            except OSError as exc:
                if exc.errno not in FALLBACK_ERRNOS:
                    raise
                self.in_kernel = False
            self._count(done, 0)
        if done < source.nbytes:
            self._copy_buffered(FileRange(source.fd, source.offset + done, source.nbytes - done), fd, offset + done)

    def _copy_buffered(self, source: FileRange, fd: int, offset: int) -> None:
        if not hasattr(self._local, "buffer"):
            self._local.buffer = memoryview(bytearray(BUFFER_BYTES))
        buffer: memoryview = self._local.buffer
        done = 0
        while done < source.nbytes:
            got = os.preadv(source.fd, [buffer[:min(BUFFER_BYTES, source.nbytes - done)]], source.offset + done)
            if got == 0:
                raise OSError(errno.EIO, f"input ended {source.nbytes - done} bytes early (truncated file?)")
            write_at(fd, buffer[:got], offset + done)
            done += got
        self._count(0, source.nbytes)

    def write(self, parts: list[Part], fd: int, offset: int) -> int:
        """Each part's bytes in order from offset (file ranges copied, tensors written, anything else
        with nbytes and write_to(copier, fd, offset) asked to write itself); returns the bytes."""
        position = offset
        for part in parts:
            if isinstance(part, FileRange):
                self.copy(part, fd, position)
            elif isinstance(part, torch.Tensor):
                data = tensor_bytes(part)
                write_at(fd, data, position)
                self._count(0, data.nbytes)
            else:
                part.write_to(self, fd, position)
            position += part_bytes(part)
        return position - offset

