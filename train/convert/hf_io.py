"""Reading and writing Hugging Face safetensors checkpoints one tensor at a time, without copies.

The format is an 8-byte little-endian header length, a JSON header naming each tensor's dtype,
shape and byte range, then the raw bytes (https://huggingface.co/docs/safetensors/index). The
reader memory-maps each file and hands out tensors that own exactly their bytes of the mapping
(torch.frombuffer): a dim-0 slice is zero-copy and a writer given it writes only those bytes.
The writer follows save_pretrained's layout (model.safetensors, or model-0000i-of-0000N.safetensors
plus model.safetensors.index.json) and streams: every header is known from the plan, so each
tensor's bytes go to their place in the file as they arrive (tensors, or byte ranges of other
files copied in the kernel), from any number of threads, and nothing but the tensors in hand is
held in memory.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
from llm_launch.train.convert.filecopy import FileRange, Part, RangeCopier, part_bytes, write_at

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
DTYPE_NAMES = {dtype: name for name, dtype in SAFETENSORS_DTYPES.items()}
DATA_ALIGNMENT = 4096
"""Where the tensor data starts in files written here: the JSON header is padded with spaces (as the
format allows; safetensors itself pads to 8 bytes) to a page boundary, so tensors whose sizes are
whole pages sit page-aligned and copies into them from page-aligned sources run at whole pages
(copy_file_range of a misaligned range cost 1.5x the kernel time here)."""


class CheckpointError(Exception):
    """The input is not a readable checkpoint (missing files, broken index)."""


@dataclass(frozen=True)
class StoredTensor:
    """Where one tensor's bytes sit in a safetensors file."""

    path: Path
    dtype: torch.dtype
    shape: tuple[int, ...]
    offset: int
    """File offset of its first byte."""

    @property
    def numel(self) -> int:
        count = 1
        for size in self.shape:
            count *= size
        return count

    @property
    def element_size(self) -> int:
        return torch.empty((), dtype=self.dtype).element_size()

    @property
    def nbytes(self) -> int:
        return self.numel * self.element_size

    @property
    def row_bytes(self) -> int:
        """Bytes of one index along dim 0 (all of it for a scalar)."""
        return (self.numel // self.shape[0] if self.shape and self.shape[0] else 1) * self.element_size


def read_header(path: Path) -> dict[str, StoredTensor]:
    """The tensors of one safetensors file, from its header (no tensor data is read)."""
    try:
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
        base = 8 + length
        return {key: StoredTensor(path, SAFETENSORS_DTYPES[info["dtype"]], tuple(info["shape"]),
                                  base + info["data_offsets"][0])
                for key, info in header.items() if key != "__metadata__"}
    except (OSError, struct.error, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file ({type(exc).__name__}: {exc})") from None


def find_safetensors(folder: Path) -> dict[str, StoredTensor]:
    """Every tensor of a HF checkpoint folder (single file or sharded index), by name."""
    index = folder / INDEX_FILE
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"{index} is not a safetensors index (no weight_map): {exc}") from None
        missing = sorted({f for f in weight_map.values() if not (folder / f).is_file()})
        if missing:
            raise CheckpointError(f"{index} names files that do not exist: {', '.join(missing)}")
        files = [folder / name for name in sorted(set(weight_map.values()))]
    else:
        files = [folder / SINGLE_FILE] if (folder / SINGLE_FILE).is_file() else sorted(folder.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{folder} has no {SINGLE_FILE}, {INDEX_FILE} or *.safetensors file")
    out: dict[str, StoredTensor] = {}
    for path in files:
        out.update(read_header(path))
    return out


class SafetensorsReader:
    """Tensors of a HF checkpoint folder as zero-copy views of its memory-mapped files.

    Every tensor returned owns exactly its own bytes of the mapping (so torch.save of it writes
    only them); llm_launch.train.convert.pages.release_mapped drops its pages from memory once it is used.
    The mapping is private and never written, so released pages come back from the file.
    """

    def __init__(self, folder: Path):
        self.folder = folder
        self.stored = find_safetensors(folder)
        self._maps: dict[Path, mmap.mmap] = {}

    def keys(self) -> list[str]:
        return list(self.stored)

    def shape(self, key: str) -> tuple[int, ...]:
        return self.stored[key].shape

    def dtype(self, key: str) -> torch.dtype:
        return self.stored[key].dtype

    def rows(self, key: str, start: int, stop: int) -> torch.Tensor:
        """Rows [start, stop) of a tensor (along dim 0), without a copy."""
        item = self.stored[key]
        if item.path not in self._maps:
            with item.path.open("rb") as raw:  # private (copy-on-write): writable, as frombuffer wants
                self._maps[item.path] = mmap.mmap(raw.fileno(), 0, access=mmap.ACCESS_COPY)
        row = item.numel // item.shape[0] if item.shape and item.shape[0] else 1
        count = (stop - start) * row
        shape = (stop - start, *item.shape[1:]) if item.shape else ()
        if count == 0:
            return torch.empty(shape, dtype=item.dtype)
        size = torch.empty((), dtype=item.dtype).element_size()
        flat = torch.frombuffer(self._maps[item.path], dtype=item.dtype, count=count,
                                offset=item.offset + start * row * size)
        return flat.view(shape)

    def whole(self, key: str) -> torch.Tensor:
        """The whole tensor, without a copy."""
        shape = self.stored[key].shape
        return self.rows(key, 0, shape[0] if shape else 1)


def mapped_tensors(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a HF checkpoint as a zero-copy view of its memory-mapped file.

    The pages are read from disk as a consumer touches them and stay reclaimable page cache,
    so a writer that needs all tensors at once (DCP's save) does not hold the model in memory.
    """
    reader = SafetensorsReader(folder)
    return {key: reader.whole(key) for key in reader.keys()}


@dataclass(frozen=True)
class PlannedTensor:
    """A tensor the writer will receive: name, shape and dtype (to plan shards before writing)."""

    key: str
    shape: tuple[int, ...]
    dtype: torch.dtype

    @property
    def nbytes(self) -> int:
        count = 1
        for size in self.shape:
            count *= size
        return count * torch.empty((), dtype=self.dtype).element_size()


class SafetensorsFileWriter:
    """One safetensors file: the header from the plan first, then each tensor at its offset, in any
    order and from any thread (os.pwrite, or os.copy_file_range for byte ranges of other files)."""

    def __init__(self, path: Path, planned: list[PlannedTensor], copier: RangeCopier | None = None):
        self.path = path
        self.copier = copier or RangeCopier()
        header: dict[str, object] = {"__metadata__": {"format": "pt"}}
        offset = 0
        self._where: dict[str, tuple[PlannedTensor, int]] = {}
        for item in planned:
            header[item.key] = {"dtype": DTYPE_NAMES[item.dtype], "shape": list(item.shape),
                                "data_offsets": [offset, offset + item.nbytes]}
            self._where[item.key] = (item, offset)
            offset += item.nbytes
        encoded = json.dumps(header, separators=(",", ":")).encode()
        encoded += b" " * (-(8 + len(encoded)) % DATA_ALIGNMENT)
        self._base = 8 + len(encoded)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        write_at(self._fd, struct.pack("<Q", len(encoded)) + encoded, 0)
        self._unwritten = set(self._where)
        self._lock = threading.Lock()

    def write(self, key: str, parts: list[Part]) -> None:
        """Write one planned tensor, given as parts whose bytes, in order, make it up (tensors or
        assembled rows of its dtype, or ranges of other files that hold its bytes)."""
        item, offset = self._where[key]
        typed = [part for part in parts if not isinstance(part, FileRange)]
        size = sum(part_bytes(part) for part in parts)
        if size != item.nbytes or any(part.dtype != item.dtype for part in typed):
            raise ValueError(f"{key}: got {size} bytes of {typed[0].dtype if typed else 'file ranges'}, planned "
                             f"{item.shape} {item.dtype}")
        self.copier.write(parts, self._fd, self._base + offset)
        with self._lock:
            self._unwritten.discard(key)

    def close(self) -> None:
        os.close(self._fd)
        if self._unwritten:
            raise ValueError(f"{self.path.name}: {len(self._unwritten)} planned tensors were never written, "
                             f"e.g. {sorted(self._unwritten)[0]}")


class ShardedSafetensorsWriter:
    """Planned tensors into save_pretrained-style safetensors shards, streamed to disk.

    Either hand every tensor to add() in plan order, or open every file of `files` (open_file)
    and write the tensors from any threads.
    """

    def __init__(self, out_dir: Path, planned: list[PlannedTensor], max_shard_bytes: int,
                 copier: RangeCopier | None = None):
        self.out_dir = out_dir
        self.copier = copier or RangeCopier()
        groups: list[list[PlannedTensor]] = [[]]
        size = 0
        for item in planned:
            if groups[-1] and size + item.nbytes > max_shard_bytes:
                groups.append([])
                size = 0
            groups[-1].append(item)
            size += item.nbytes
        count = len(groups)
        self.files: dict[str, list[PlannedTensor]] = {
            SINGLE_FILE if count == 1 else f"model-{i + 1:05d}-of-{count:05d}.safetensors": group
            for i, group in enumerate(groups)}
        self.file_of = {item.key: name for name, group in self.files.items() for item in group}
        self.total_bytes = sum(item.nbytes for item in planned)
        self._open: SafetensorsFileWriter | None = None
        self._done: set[str] = set()

    def open_file(self, name: str) -> SafetensorsFileWriter:
        return SafetensorsFileWriter(self.out_dir / name, self.files[name], self.copier)

    def add(self, key: str, tensor: torch.Tensor) -> None:
        """Write the next tensor of the plan (files are opened and closed as the plan moves on)."""
        name = self.file_of[key]
        if self._open is None or self._open.path.name != name:
            if self._open is not None:
                self._open.close()
                self._done.add(self._open.path.name)
            self._open = self.open_file(name)
        self._open.write(key, [tensor])

    def finish(self, done: set[str] | None = None) -> None:
        """Close the last file add() opened and write the index when there are several files."""
        if self._open is not None:
            self._open.close()
            self._done.add(self._open.path.name)
            self._open = None
        unwritten = [name for name in self.files if name not in self._done | (done or set())]
        if unwritten:
            raise ValueError(f"{len(unwritten)} planned files were never written, e.g. {unwritten[0]}")
        if len(self.files) > 1:
            index = {"metadata": {"total_size": self.total_bytes}, "weight_map": dict(sorted(self.file_of.items()))}
            (self.out_dir / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
