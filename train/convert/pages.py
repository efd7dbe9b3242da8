"""Memory a converter is done with: dropping read pages of mapped files, reusable scratch buffers, and
tensors assembled a cache-sized block of rows at a time.

Pages of a memory-mapped input stay in the process's resident set after they are read, and a
fresh allocation per tensor costs a page fault and zero-fill per 4 KiB; both are avoided here
so memory stays at a few tensors and copies run at memcpy speed.
"""

from __future__ import annotations

import ctypes
import math
import mmap
import threading
from dataclasses import dataclass

import torch

CHUNK_BYTES = 64 * 2**20
_LIBC = ctypes.CDLL(None, use_errno=True)
_LIBC.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)


def release_mapped(tensor: torch.Tensor) -> None:
    """Drop the whole pages under tensor from this process (madvise MADV_DONTNEED).

    Only for tensors read from a private, never-written file mapping (safetensors maps here,
    torch.load(mmap=True)): their pages come back from the file when touched again
    (https://man7.org/linux/man-pages/man2/madvise.2.html). Pages shared with neighbours at
    either end are kept.
    """
    if tensor.numel() == 0:
        return
    start = tensor.data_ptr()
    extent = 1 + sum((size - 1) * stride for size, stride in zip(tensor.shape, tensor.stride(), strict=True))
    end = start + extent * tensor.element_size()
    low, high = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE, end // mmap.PAGESIZE * mmap.PAGESIZE
    if high > low:
        _LIBC.madvise(low, high - low, mmap.MADV_DONTNEED)


class Scratch:
    """Bump allocator over reusable buffers: tensors that own exactly their bytes, pages faulted once."""

    def __init__(self) -> None:
        self._chunks: list[torch.Tensor] = []
        self._chunk = 0
        self._used = 0

    def take(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """An uninitialised tensor, valid until reset()."""
        count = 1
        for size in shape:
            count *= size
        if count == 0:
            return torch.empty(shape, dtype=dtype)
        nbytes = count * torch.empty((), dtype=dtype).element_size()
        while True:
            if self._chunk == len(self._chunks):
                self._chunks.append(torch.empty(max(nbytes, CHUNK_BYTES), dtype=torch.uint8))
            chunk = self._chunks[self._chunk]
            offset = -(-self._used // 64) * 64  # every tensor 64-byte aligned
            if offset + nbytes <= chunk.numel():
                break
            self._chunk, self._used = self._chunk + 1, 0
        self._used = offset + nbytes
        # frombuffer gives the tensor a storage of exactly its bytes (torch.save writes whole storages)
        buffer = (ctypes.c_char * nbytes).from_address(chunk.data_ptr() + offset)
        return torch.frombuffer(buffer, dtype=dtype, count=count).view(shape)

    def reset(self) -> None:
        """Every tensor taken so far may be overwritten from now on."""
        self._chunk, self._used = 0, 0


BLOCK_BYTES = 2**20
"""Bytes of rows assembled and written at a time: few enough to stay in the CPU cache from the copy to
the write (a whole 23 MB tensor at once made both run three times slower; bench/convert.py)."""
_SCRATCH = threading.local()


@dataclass(frozen=True)
class AssembledRows:
    """A tensor made of sources concatenated along cat_dim (0 or 1) and cast to dtype, written a block of
    rows at a time through a per-thread scratch buffer: column slices, several ranges, casts."""

    shape: tuple[int, ...]
    dtype: torch.dtype
    cat_dim: int
    sources: tuple[torch.Tensor, ...]
    """Views (of a mapped file) in order; each has the output's shape except along cat_dim."""

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * torch.empty((), dtype=self.dtype).element_size()

    def write_to(self, copier, fd: int, offset: int) -> None:
        """Write the tensor's bytes at offset with copier (llm_launch.train.convert.filecopy.RangeCopier)."""
        if not hasattr(_SCRATCH, "scratch"):
            _SCRATCH.scratch = Scratch()
        scratch: Scratch = _SCRATCH.scratch
        row_bytes = self.nbytes // self.shape[0] if self.shape and self.shape[0] else self.nbytes
        block = max(1, BLOCK_BYTES // max(row_bytes, 1))
        if self.cat_dim == 0:
            position = 0
            for source in self.sources:
                for start in range(0, len(source), block):
                    rows = source[start:start + block]
                    value = scratch.take(tuple(rows.shape), self.dtype)
                    value.copy_(rows)
                    copier.write([value], fd, offset + (position + start) * row_bytes)
                    scratch.reset()
                position += len(source)
            return
        for start in range(0, self.shape[0], block):
            count = min(block, self.shape[0] - start)
            value = scratch.take((count, *self.shape[1:]), self.dtype)
            column = 0
            for source in self.sources:
                width = source.shape[self.cat_dim]
                value.narrow(self.cat_dim, column, width).copy_(source[start:start + count])
                column += width
            copier.write([value], fd, offset + start * row_bytes)
            scratch.reset()
