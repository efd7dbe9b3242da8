"""A cheap fingerprint of a file: its size plus a hash of sampled blocks, recorded when written, checked when read.

Used for packed data shards (train/data/packed.py) and checkpoint files (train/checkpoint_integrity.py):
reading about 70 KiB per file, whatever its size, catches truncated, swapped and re-written files
before a job reads them, though not a single flipped byte between samples.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import NamedTuple

SAMPLE_BLOCK = 4096
SAMPLE_BLOCKS = 16
"""Blocks hashed beside the first and the last."""


def sampled_sha256(data: bytes | memoryview | Path) -> str:
    """SHA-256 of the size and of sampled blocks (first, last and SAMPLE_BLOCKS evenly spaced) of a file or buffer."""
    size = data.stat().st_size if isinstance(data, Path) else len(data)
    digest = hashlib.sha256(str(size).encode())
    last = max(0, size - SAMPLE_BLOCK)
    starts = sorted({0, last, *(last * i // (SAMPLE_BLOCKS + 1) for i in range(1, SAMPLE_BLOCKS + 1))})
    if isinstance(data, Path):
        with data.open("rb") as file:
            for start in starts:
                file.seek(start)
                digest.update(file.read(SAMPLE_BLOCK))
    else:
        for start in starts:
            digest.update(data[start:start + SAMPLE_BLOCK])
    return digest.hexdigest()


def file_record(path: Path) -> dict:
    """What to record about a written file: {"bytes", "sampled_sha256"}."""
    return {"bytes": path.stat().st_size, "sampled_sha256": sampled_sha256(path)}


class Mismatch(NamedTuple):
    """How a file differs from its record."""

    kind: str
    """missing, size or content."""
    size: int
    """The file's size now (0 when missing)."""

    def describe(self, bytes_expected: int) -> str:
        if self.kind == "missing":
            return "missing"
        if self.kind == "size":
            state = "truncated" if self.size < bytes_expected else "longer than recorded"
            return f"{self.size} bytes where {bytes_expected} were written ({state})"
        return "its content differs from the checksum recorded when it was written"


def mismatch(path: Path, bytes_expected: int, sampled: str | None) -> Mismatch | None:
    """How path differs from what was recorded (missing, size, sampled content), or None when it matches."""
    if not path.is_file():
        return Mismatch("missing", 0)
    size = path.stat().st_size
    if size != bytes_expected:
        return Mismatch("size", size)
    if sampled is not None and sampled_sha256(path) != sampled:
        return Mismatch("content", size)
    return None
