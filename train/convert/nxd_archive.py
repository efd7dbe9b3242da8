"""NxD shard archives (model/dp_rank_00_tp_rank_XX_pp_rank_YY.pt): written with every record's place known
before its bytes (hf-to-nxd), and read as views of the memory-mapped files with each tensor's offset (nxd-to-hf).

The archives are torch.save zip files, what NxD's loader and torch.load(weights_only=True, mmap=True) read.
"""

from __future__ import annotations

import mmap
import os
import struct
import sys
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from llm_launch.train.convert.layout import ShardLayout, nxd_shard_name
from torch.utils.serialization import config as serialization_config

MODEL_SUBDIR = "model"
Shards = dict[tuple[int, int], dict[str, torch.Tensor]]


def shard_path(model_dir: Path, tp_rank: int, pp_rank: int) -> Path:
    return model_dir / nxd_shard_name(tp_rank, pp_rank)


Spec = dict[str, tuple[tuple[int, ...], torch.dtype]]
RECORD_ALIGNMENT = 4096
"""Where each tensor's bytes start in a shard archive (torch.utils.serialization.config.save.storage_alignment,
64 by default): a page boundary, so nxd-to-hf copies whole pages into the page-aligned safetensors data
(llm_launch.train.convert.hf_io.DATA_ALIGNMENT) and the shards suit GPUDirect Storage, which needs 4 KiB."""


def write_skeleton(path: Path, spec: Spec, known: dict | None = None) -> dict[str, int]:
    """A torch.save archive of the named tensors with every record's space reserved but not written;
    returns the file offset where each tensor's bytes go.

    torch.serialization.skip_data writes the zip's headers and leaves each storage's bytes as a
    hole, and loading the archive to the meta device tags each storage with its offset
    (https://docs.pytorch.org/tutorials/unstable/gpu_direct_storage.html). The tensors handed to
    torch.save are allocated but never touched, so they cost no memory. With `known` (a dict kept
    across calls), an archive of the same tensors whose zip entries sit at the same places as one
    read before reuses its offsets instead of being loaded again (the TP ranks of a stage).
    """
    state = {key: torch.empty(shape, dtype=dtype) for key, (shape, dtype) in spec.items()}
    with serialization_config.patch({"save.compute_crc32": False, "save.storage_alignment": RECORD_ALIGNMENT}), \
            torch.serialization.skip_data():
        torch.save(state, path)
    del state
    # entry names (less the per-file folder), places and sizes
    entries = tuple((info.filename.split("/", 1)[-1], info.header_offset, info.file_size) for info in _records(path))
    signature = (tuple(spec.items()), entries)
    if known is not None and signature in known:
        return known[signature]
    reserved = torch.load(path, map_location="meta", weights_only=True)
    offsets = {key: reserved[key].untyped_storage()._checkpoint_offset for key in spec}
    if known is not None:
        known[signature] = offsets
    return offsets


class ShardArchives:
    """The shards' archives (write_skeleton), written one after another on a thread of their own so
    that filling the first shards overlaps writing the last ones (torch.save is Python-bound)."""

    def __init__(self, model_dir: Path, specs: dict[tuple[int, int], Spec]):
        self._model_dir = model_dir
        self._specs = specs
        self._done = {rank: threading.Event() for rank in specs}
        self._written: dict[tuple[int, int], tuple[int, dict[str, int]]] = {}
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._write_all, name="nxd-skeletons", daemon=True)

    def _write_all(self) -> None:
        known: dict = {}
        try:
            for rank, spec in self._specs.items():
                path = shard_path(self._model_dir, *rank)
                offsets = write_skeleton(path, spec, known)
                self._written[rank] = (os.open(path, os.O_WRONLY), offsets)
                self._done[rank].set()
        except BaseException as exc:  # handed to every thread that waits for a shard
            self._failure = exc
        finally:
            for event in self._done.values():
                event.set()

    def start(self) -> None:
        self._thread.start()

    def ready(self, rank: tuple[int, int]) -> tuple[int, dict[str, int]]:
        """The shard's open file and the offset of every tensor's bytes in it, once its archive exists."""
        self._done[rank].wait()
        if rank not in self._written:
            raise RuntimeError(f"writing {nxd_shard_name(*rank)} failed: {self._failure!r}") from self._failure
        return self._written[rank]

    def close(self) -> None:
        if self._thread.ident is not None:  # started
            self._thread.join()
        for fd, _ in self._written.values():
            os.close(fd)


def find_model_dir(path: Path) -> Path:
    """The folder holding the shards: path itself, or path/model (an NxD tag or converter output)."""
    return path / MODEL_SUBDIR if (path / MODEL_SUBDIR).is_dir() else path


def _records(path: Path) -> list[zipfile.ZipInfo]:
    with zipfile.ZipFile(path) as archive:
        return archive.infolist()


def _stored_record(path: Path, info: zipfile.ZipInfo) -> bytes:
    """A stored (uncompressed) zip record's bytes, read past its local header without checking its
    CRC32, which torch.save may leave unset (https://pkware.cachefly.net/webdocs/casestudies/APPNOTE.TXT,
    4.3.7: a 30-byte header whose last four bytes give the name and extra field lengths)."""
    with path.open("rb") as handle:
        handle.seek(info.header_offset)
        name_length, extra_length = struct.unpack("<HH", handle.read(30)[26:30])
        handle.seek(info.header_offset + 30 + name_length + extra_length)
        return handle.read(info.compress_size)


def load_shard(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, int | None]]:
    """One shard's tensors as views of the memory-mapped file (a {"model": ...} wrapper is unwrapped),
    and the file offset of each contiguous tensor's bytes (None where they are not contiguous).

    The archive is read to the meta device, which tags every storage with its offset in the file
    (https://docs.pytorch.org/tutorials/unstable/gpu_direct_storage.html); the tensors are then
    those bytes of a private mapping, as torch.load(mmap=True) would give them.
    """
    orders = [_stored_record(path, info).decode() for info in _records(path) if info.filename.endswith("/byteorder")]
    if orders and orders[0] != sys.byteorder:  # torch.load byte-swaps such a file; views of its bytes cannot
        raise ValueError(f"{path.name} was saved on a {orders[0]}-endian machine; convert it where it was saved")
    state = torch.load(path, map_location="meta", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    with path.open("rb") as raw:  # private (copy-on-write): writable, as frombuffer wants; never written
        mapping = mmap.mmap(raw.fileno(), 0, access=mmap.ACCESS_COPY) if os.fstat(raw.fileno()).st_size else None
    tensors, offsets = {}, {}
    for key, meta in state.items():
        if not isinstance(meta, torch.Tensor):
            continue
        storage, size = meta.untyped_storage(), meta.element_size()
        if storage.nbytes() == 0 or mapping is None:
            tensors[key], offsets[key] = torch.empty(meta.shape, dtype=meta.dtype), None
            continue
        flat = torch.frombuffer(mapping, dtype=meta.dtype, count=storage.nbytes() // size,
                                offset=storage._checkpoint_offset)
        tensors[key] = flat.as_strided(meta.shape, meta.stride(), meta.storage_offset())
        offsets[key] = (storage._checkpoint_offset + meta.storage_offset() * size) if meta.is_contiguous() else None
    return tensors, offsets


@dataclass
class MappedShards:
    """Shards memory-mapped by open_shards: private, never-written mappings whose pages may be released."""

    states: Shards
    offsets: dict[tuple[int, int], dict[str, int | None]]
    """Per shard, the file offset of each contiguous tensor's bytes (None where not contiguous)."""
    paths: dict[tuple[int, int], Path]


def open_shards(model_dir: Path, layout: ShardLayout) -> tuple[MappedShards, list[tuple[str, str]]]:
    """Memory-map every shard of the layout; also report missing files."""
    shards = MappedShards({}, {}, {})
    problems = []
    for pp_rank in range(layout.pp):
        for tp_rank in range(layout.tp):
            path = shard_path(model_dir, tp_rank, pp_rank)
            if not path.is_file():
                problems.append((str(path), f"missing; a tp={layout.tp} pp={layout.pp} checkpoint has "
                                 f"{layout.tp * layout.pp} shards (check --tp/--pp)"))
                continue
            rank = (tp_rank, pp_rank)
            shards.states[rank], shards.offsets[rank] = load_shard(path)
            shards.paths[rank] = path
    return shards, problems
