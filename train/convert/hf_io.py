"""Reading and writing Hugging Face safetensors checkpoints one tensor at a time.

Reading goes through safetensors' safe_open and get_slice, so only the requested rows or
columns of a tensor are copied out of the (memory-mapped) file. Writing follows
save_pretrained's layout: model.safetensors, or model-0000i-of-0000N.safetensors shards plus
model.safetensors.index.json when the weights exceed one shard; each shard is written and
released as soon as its last tensor arrives, so at most one shard is held in memory.
"""

from __future__ import annotations

import json
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}


class CheckpointError(Exception):
    """The input is not a readable checkpoint (missing files, broken index)."""


def find_safetensors(folder: Path) -> dict[str, Path]:
    """Map every tensor name to the safetensors file holding it (single file or sharded index)."""
    index = folder / INDEX_FILE
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"{index} is not a safetensors index (no weight_map): {exc}") from None
        missing = sorted({f for f in weight_map.values() if not (folder / f).is_file()})
        if missing:
            raise CheckpointError(f"{index} names files that do not exist: {', '.join(missing)}")
        return {key: folder / name for key, name in weight_map.items()}
    files = [folder / SINGLE_FILE] if (folder / SINGLE_FILE).is_file() else sorted(folder.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{folder} has no {SINGLE_FILE}, {INDEX_FILE} or *.safetensors file")
    out: dict[str, Path] = {}
    for path in files:
        with safe_open(str(path), framework="pt") as handle:
            out.update({key: path for key in handle.keys()})
    return out


class SafetensorsReader:
    """Random access to the tensors of a HF checkpoint folder, slice by slice."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.files = find_safetensors(folder)
        self._handles: dict[Path, object] = {}
        self.bytes_read = 0

    def _handle(self, key: str):
        path = self.files[key]
        if path not in self._handles:
            self._handles[path] = safe_open(str(path), framework="pt")
        return self._handles[path]

    def keys(self) -> list[str]:
        return list(self.files)

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._handle(key).get_slice(key).get_shape())

    def dtype(self, key: str) -> torch.dtype:
        return SAFETENSORS_DTYPES[self._handle(key).get_slice(key).get_dtype()]

    def read(self, key: str, dim: int = 0, ranges: tuple[tuple[int, int], ...] | None = None) -> torch.Tensor:
        """The given index ranges of a tensor along dim, concatenated (the whole tensor when None)."""
        handle = self._handle(key)
        if ranges is None:
            out = handle.get_tensor(key)
        else:
            view = handle.get_slice(key)
            parts = [view[start:stop] if dim == 0 else view[:, start:stop] for start, stop in ranges]
            out = parts[0] if len(parts) == 1 else torch.cat(parts, dim=dim)
        self.bytes_read += out.numel() * out.element_size()
        return out

    def close(self) -> None:
        """Drop the open (memory-mapped) files; the next read reopens them."""
        self._handles.clear()


def mapped_tensors(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a HF checkpoint as a zero-copy view of its memory-mapped file.

    The pages are read from disk as a consumer touches them and stay reclaimable page cache,
    so a writer that needs all tensors at once (DCP's save) does not hold the model in memory.
    """
    out: dict[str, torch.Tensor] = {}
    for path in sorted(set(find_safetensors(folder).values())):
        with path.open("rb") as raw:
            mapped = mmap.mmap(raw.fileno(), 0, access=mmap.ACCESS_COPY)
        (header_len,) = struct.unpack("<Q", mapped[:8])
        header = json.loads(mapped[8:8 + header_len])
        base = 8 + header_len
        for key, info in header.items():
            if key == "__metadata__":
                continue
            dtype = SAFETENSORS_DTYPES[info["dtype"]]
            start, stop = info["data_offsets"]
            count = (stop - start) // torch.empty((), dtype=dtype).element_size()
            flat = torch.frombuffer(mapped, dtype=dtype, count=count, offset=base + start) if count else \
                torch.empty(0, dtype=dtype)
            out[key] = flat.view(info["shape"])
    return out


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


class ShardedSafetensorsWriter:
    """Writes tensors, in the planned order, into save_pretrained-style safetensors shards."""

    def __init__(self, out_dir: Path, planned: list[PlannedTensor], max_shard_bytes: int):
        self.out_dir = out_dir
        groups: list[list[PlannedTensor]] = [[]]
        size = 0
        for item in planned:
            if groups[-1] and size + item.nbytes > max_shard_bytes:
                groups.append([])
                size = 0
            groups[-1].append(item)
            size += item.nbytes
        count = len(groups)
        self.file_of = {}
        for i, group in enumerate(groups):
            name = SINGLE_FILE if count == 1 else f"model-{i + 1:05d}-of-{count:05d}.safetensors"
            self.file_of.update({item.key: name for item in group})
        self.remaining: dict[str, int] = {}
        for name in self.file_of.values():
            self.remaining[name] = self.remaining.get(name, 0) + 1
        self.expected = {item.key: item for item in planned}
        self.pending: dict[str, dict[str, torch.Tensor]] = {}
        self.total_bytes = sum(item.nbytes for item in planned)
        self.peak_pending_bytes = 0

    def add(self, key: str, tensor: torch.Tensor) -> None:
        planned = self.expected[key]
        if tuple(tensor.shape) != planned.shape or tensor.dtype != planned.dtype:
            raise ValueError(f"{key}: got {tuple(tensor.shape)} {tensor.dtype}, planned {planned.shape} "
                             f"{planned.dtype}")
        name = self.file_of[key]
        self.pending.setdefault(name, {})[key] = tensor.contiguous()
        held = sum(t.numel() * t.element_size() for group in self.pending.values() for t in group.values())
        self.peak_pending_bytes = max(self.peak_pending_bytes, held)
        self.remaining[name] -= 1
        if self.remaining[name] == 0:
            save_file(self.pending.pop(name), str(self.out_dir / name), metadata={"format": "pt"})

    def finish(self) -> None:
        unwritten = [key for key, name in self.file_of.items() if self.remaining[name]]
        if unwritten:
            raise ValueError(f"{len(unwritten)} planned tensors were never written, e.g. {unwritten[0]}")
        if len(self.remaining) > 1:
            index = {"metadata": {"total_size": self.total_bytes}, "weight_map": dict(sorted(self.file_of.items()))}
            (self.out_dir / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
