"""Hugging Face safetensors <-> NxD sharded checkpoints (model/dp_rank_00_tp_rank_XX_pp_rank_YY.pt).

Both directions read memory-mapped files and copy each byte at most once on its way out: a
range of rows is written straight from the input's mapping, while column slices (o_proj,
down_proj), several ranges, gate/up fusion and casts are assembled once in reusable scratch
memory. Pages are dropped from memory as soon as they are written, so the process holds about
one shard per thread, never the model.

hf-to-nxd writes each shard from one of `threads` threads as a torch.save zip archive (what
NxD's loader and torch.load(weights_only=True) read), without the per-record CRC32: torch.load
does not check it and computing it cost more than the write itself.

nxd-to-hf writes each HF tensor at its offset in its safetensors file, from `threads` threads.
Replicated tensors (norms, and K/V heads under KV replication) must agree on every rank; where
they do not, the check names the replication order found (trn1 interleaved, trn2 blocked).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import torch
from torch.utils.serialization import config as serialization_config

from train.convert.hf_io import PlannedTensor, SafetensorsReader, ShardedSafetensorsWriter
from train.convert.layout import HW_BACKENDS, ModelShape, ShardLayout, nxd_shard_name
from train.convert.mapping import LM_HEAD, ShardTensor, hf_shapes, shard_tensor_shape, shard_tensors
from train.convert.pages import Scratch, release_mapped

MODEL_SUBDIR = "model"
KV_ORDER = {"trn1": "interleaved (trn1: rank r holds KV head r mod kv_heads)",
            "trn2": "blocked (trn2: rank r holds KV head r // kv_replicator)"}
Progress = Callable[[int], None]
Shards = dict[tuple[int, int], dict[str, torch.Tensor]]


def default_threads() -> int:
    """Writer threads: one per output file, up to the CPUs this process may use (at most 8)."""
    return max(1, min(8, len(os.sched_getaffinity(0))))


@dataclass
class ConversionStats:
    """What a conversion moved, for the summary line and the benchmark (thread-safe counters)."""

    tensors: int = 0
    """Tensors written."""
    bytes_written: int = 0
    """Bytes of tensor data written."""
    bytes_read: int = 0
    """Bytes of tensor data read from the input."""
    peak_held_bytes: int = 0
    """Most tensor bytes held at once over all threads (shards being assembled; mapped views included)."""
    files: int = 0
    """Files written."""
    _held: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def wrote(self, nbytes: int, progress: Progress | None, count: int = 1) -> None:
        with self._lock:
            self.tensors += count
            self.bytes_written += nbytes
        if progress:
            progress(nbytes)

    def finished_file(self, bytes_read: int = 0) -> None:
        with self._lock:
            self.files += 1
            self.bytes_read += bytes_read

    def hold(self, nbytes: int) -> None:
        """Count tensor bytes taken (positive) or released (negative)."""
        with self._lock:
            self._held += nbytes
            self.peak_held_bytes = max(self.peak_held_bytes, self._held)


def shard_path(model_dir: Path, tp_rank: int, pp_rank: int) -> Path:
    return model_dir / nxd_shard_name(tp_rank, pp_rank)


def _owns_its_bytes(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor itself when its storage is exactly its bytes, else a copy that is.

    torch.save writes a tensor's whole storage: a slice that views a larger tensor would carry
    all of it into the file.
    """
    nbytes = tensor.numel() * tensor.element_size()
    if tensor.is_contiguous() and tensor.storage_offset() == 0 and tensor.untyped_storage().nbytes() == nbytes:
        return tensor
    return tensor.clone(memory_format=torch.contiguous_format)


def _parallel(tasks: list[Callable[[], None]], threads: int) -> None:
    """Run the tasks on up to `threads` threads; the first failure is raised."""
    if threads <= 1 or len(tasks) <= 1:
        for task in tasks:
            task()
        return
    with ThreadPoolExecutor(max_workers=min(threads, len(tasks))) as pool:
        for future in [pool.submit(task) for task in tasks]:
            future.result()


def _scratch(local: threading.local) -> Scratch:
    if not hasattr(local, "scratch"):
        local.scratch = Scratch()
    return local.scratch


def _assemble(reader: SafetensorsReader, tensor: ShardTensor, full: dict[str, tuple[int, ...]],
              dtype: torch.dtype | None, scratch: Scratch) -> tuple[torch.Tensor, bool]:
    """One shard tensor and whether it is a view of the mapped input (else a copy in scratch).

    A single row range is the input's own bytes; anything else (column slices, several ranges,
    gate and up fused, a cast) is copied once, straight to its place in a scratch tensor.
    """
    first = tensor.pieces[0]
    source_dtype = reader.dtype(first.hf_key)
    if (len(tensor.pieces) == 1 and first.dim == 0 and (first.ranges is None or len(first.ranges) == 1)
            and dtype in (None, source_dtype)):
        start, stop = first.ranges[0] if first.ranges else (0, full[first.hf_key][0])
        return reader.rows(first.hf_key, start, stop), True
    value = scratch.take(shard_tensor_shape(tensor, full), dtype or source_dtype)
    position = 0
    for piece in tensor.pieces:
        source = reader.whole(piece.hf_key)
        for start, stop in piece.ranges or ((0, source.shape[piece.dim]),):
            part = source.narrow(piece.dim, start, stop - start)
            value.narrow(tensor.cat_dim, position, stop - start).copy_(part)
            release_mapped(part)  # copied: its pages (for a column slice, all the tensor's) can go now
            position += stop - start
    return value, False


def hf_to_nxd(reader: SafetensorsReader, out_dir: Path, shape: ModelShape, layout: ShardLayout, *,
              dtype: torch.dtype | None = None, progress: Progress | None = None,
              threads: int = 1) -> ConversionStats:
    """Write every shard of layout under out_dir/model/ from the HF checkpoint reader reads."""
    model_dir = out_dir / MODEL_SUBDIR
    model_dir.mkdir(parents=True, exist_ok=True)
    with_lm_head = LM_HEAD in reader.stored
    full = hf_shapes(shape)
    stats = ConversionStats()
    local = threading.local()

    def write_shard(tp_rank: int, pp_rank: int) -> None:
        scratch = _scratch(local)
        state: dict[str, torch.Tensor] = {}
        mapped: list[torch.Tensor] = []
        for tensor in shard_tensors(shape, layout, tp_rank, pp_rank, with_lm_head):
            value, is_view = _assemble(reader, tensor, full, dtype, scratch)
            state[tensor.nxd_key] = _owns_its_bytes(value)
            if is_view:
                mapped.append(value)
        held = sum(t.numel() * t.element_size() for t in state.values())
        stats.hold(held)
        torch.save(state, shard_path(model_dir, tp_rank, pp_rank))
        stats.wrote(held, progress, len(state))
        stats.finished_file(held)
        for value in mapped:
            release_mapped(value)
        del state, mapped
        scratch.reset()
        stats.hold(-held)

    tasks = [partial(write_shard, t, p) for p in range(layout.pp) for t in range(layout.tp)]
    with serialization_config.patch({"save.compute_crc32": False}):
        _parallel(tasks, threads)
    return stats


def find_model_dir(path: Path) -> Path:
    """The folder holding the shards: path itself, or path/model (an NxD tag or converter output)."""
    return path / MODEL_SUBDIR if (path / MODEL_SUBDIR).is_dir() else path


def load_shard(path: Path) -> dict[str, torch.Tensor]:
    """One shard's tensors, memory-mapped (a {"model": ...} wrapper is unwrapped)."""
    state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    return state


@dataclass
class MappedShards:
    """Shards memory-mapped by open_shards: private, never-written mappings whose pages may be released."""

    states: Shards


def open_shards(model_dir: Path, layout: ShardLayout) -> tuple[MappedShards, list[tuple[str, str]]]:
    """Memory-map every shard of the layout; also report missing files."""
    shards, problems = {}, []
    for pp_rank in range(layout.pp):
        for tp_rank in range(layout.tp):
            path = shard_path(model_dir, tp_rank, pp_rank)
            if not path.is_file():
                problems.append((str(path), f"missing; a tp={layout.tp} pp={layout.pp} checkpoint has "
                                 f"{layout.tp * layout.pp} shards (check --tp/--pp)"))
                continue
            shards[(tp_rank, pp_rank)] = load_shard(path)
    return MappedShards(shards), problems


def _with_lm_head(shards: Shards, layout: ShardLayout) -> bool:
    return all(LM_HEAD in state for (tp, pp), state in shards.items() if pp == layout.pp - 1)


def shard_problems(shards: Shards, shape: ModelShape, layout: ShardLayout) -> list[tuple[str, str]]:
    """Keys and shapes of every shard against what the config and layout expect."""
    full = hf_shapes(shape)
    with_lm_head = _with_lm_head(shards, layout)
    out: list[tuple[str, str]] = []
    for (tp_rank, pp_rank), state in sorted(shards.items(), key=lambda item: (item[0][1], item[0][0])):
        name = nxd_shard_name(tp_rank, pp_rank)
        expected = {t.nxd_key: shard_tensor_shape(t, full)
                    for t in shard_tensors(shape, layout, tp_rank, pp_rank, with_lm_head)}
        for key, want in expected.items():
            if key not in state:
                out.append((f"{name}:{key}", f"missing; expected shape {list(want)} (check --fused-qkv, --pp, "
                            "--virtual-pp)"))
            elif tuple(state[key].shape) != want:
                out.append((f"{name}:{key}", f"has shape {list(state[key].shape)} but the config and layout "
                            f"expect {list(want)} (check --config/--model, --tp, --kv-replicator)"))
        for key in state:
            if key not in expected:
                out.append((f"{name}:{key}", "is not a tensor this layout puts in this shard (check --pp, "
                            "--virtual-pp, --fused-qkv)"))
    return out


@dataclass(frozen=True)
class _Segment:
    """Index range [start, stop) of one HF tensor along dim, as held by one shard."""

    start: int
    stop: int
    rank: tuple[int, int]
    value: torch.Tensor


def _piece_offset(tensor: ShardTensor, index: int, full: dict[str, tuple[int, ...]]) -> int:
    return sum(piece.length(full[piece.hf_key][piece.dim]) for piece in tensor.pieces[:index])


def _segments(shards: Shards, shape: ModelShape, layout: ShardLayout) -> dict[str, tuple[int, list[_Segment]]]:
    """For each HF key: the dim it is split on and every shard's segment of it, sorted by position."""
    full = hf_shapes(shape)
    out: dict[str, tuple[int, list[_Segment]]] = {}
    for rank, state in shards.items():
        for tensor in shard_tensors(shape, layout, rank[0], rank[1], _with_lm_head(shards, layout)):
            source = state[tensor.nxd_key]
            for index, piece in enumerate(tensor.pieces):
                position = _piece_offset(tensor, index, full)
                for start, stop in piece.ranges or ((0, full[piece.hf_key][piece.dim]),):
                    value = source.narrow(tensor.cat_dim, position, stop - start)
                    out.setdefault(piece.hf_key, (piece.dim, []))[1].append(_Segment(start, stop, rank, value))
                    position += stop - start
    for _, segments in out.values():
        segments.sort(key=lambda s: (s.start, s.stop, s.rank[1], s.rank[0]))
    return out


def _disagreeing(shards: Shards, shape: ModelShape, layout: ShardLayout,
                 keys: set[str] | None = None) -> list[tuple[str, _Segment, _Segment]]:
    """Replicated ranges whose copies differ, as (HF key, one copy, a differing copy)."""
    out = []
    for key, (_, segments) in _segments(shards, shape, layout).items():
        if keys is None or key in keys:
            group_first: dict[tuple[int, int], _Segment] = {}
            for segment in segments:
                kept = group_first.setdefault((segment.start, segment.stop), segment)
                if kept is not segment and not torch.equal(kept.value, segment.value):
                    out.append((key, kept, segment))
                    break
    return out


def replica_problems(shards: Shards, shape: ModelShape, layout: ShardLayout) -> list[tuple[str, str]]:
    """One problem when copies of a replicated tensor differ, naming the KV order found.

    Under KV replication every KV head sits on kv_replicator ranks, and which ranks depends on
    --hw; shards read with the other order would otherwise convert silently into wrong K/V.
    """
    bad = _disagreeing(shards, shape, layout)
    if not bad:
        return []
    key, kept, other = bad[0]
    where = (f"{len(bad)} replicated tensors differ between TP ranks (first: {key}, ranks {kept.rank[0]} and "
             f"{other.rank[0]} of pp rank {kept.rank[1]})")
    kv_keys = {k for k, _, _ in bad if k.endswith(("k_proj.weight", "v_proj.weight"))}
    if layout.kv_replicator == 1 or len(kv_keys) != len(bad):
        return [("--input", f"{where}; the shards are inconsistent (written by a different layout or damaged)")]
    found = [hw for hw in HW_BACKENDS
             if hw != layout.hw and not _disagreeing(shards, shape, replace(layout, hw=hw), kv_keys)]
    message = f"{where}: --hw {layout.hw} expects K/V replicated {KV_ORDER[layout.hw]}, but "
    if found:
        message += f"the shards hold them {KV_ORDER[found[0]]}; pass --hw {found[0]} if they were written for it"
    else:
        message += (f"they follow neither order ({', '.join(HW_BACKENDS)}); check --kv-replicator and --tp "
                    "against the training job")
    return [("--hw", message)]


def _hf_parts(dim: int, segments: list[_Segment], item: PlannedTensor, scratch: Scratch) -> list[torch.Tensor]:
    """The HF tensor's bytes in order: row segments as they lie in the shards, column segments assembled."""
    unique = [s for i, s in enumerate(segments) if i == 0 or (s.start, s.stop) != (segments[i - 1].start,
                                                                                 segments[i - 1].stop)]
    if [s.start for s in unique] != [0] + [s.stop for s in unique[:-1]] or unique[-1].stop != item.shape[dim]:
        raise ValueError(f"{item.key}: the shards leave parts unset or overlap; check --tp, --kv-replicator and --hw")
    if dim == 0 and all(s.value.dtype == item.dtype and s.value.is_contiguous() for s in unique):
        return [s.value for s in unique]
    value = scratch.take(item.shape, item.dtype)
    for s in unique:
        value.narrow(dim, s.start, s.stop - s.start).copy_(s.value)
    return [value]


def nxd_to_hf(shards: MappedShards, writer_dir: Path, shape: ModelShape, layout: ShardLayout, *,
              max_shard_bytes: int, dtype: torch.dtype | None = None, progress: Progress | None = None,
              threads: int = 1) -> ConversionStats:
    """Rebuild the HF tensors from memory-mapped shards and write them as safetensors, from `threads` threads."""
    full = hf_shapes(shape)
    segments = _segments(shards.states, shape, layout)
    planned = [PlannedTensor(key, full[key], dtype or segments[key][1][0].value.dtype)
               for key in full if key in segments]
    writer = ShardedSafetensorsWriter(writer_dir, planned, max_shard_bytes)
    files = {name: writer.open_file(name) for name in writer.files}
    stats = ConversionStats()
    local = threading.local()

    def write_tensor(item: PlannedTensor) -> None:
        scratch = _scratch(local)
        dim, pieces = segments[item.key]
        parts = _hf_parts(dim, pieces, item, scratch)
        files[writer.file_of[item.key]].write(item.key, parts)
        for piece in pieces:  # its pages are read: drop them (a neighbour that still needs one reads it again)
            release_mapped(piece.value)
        scratch.reset()
        stats.wrote(item.nbytes, progress)

    try:
        _parallel([partial(write_tensor, item) for item in planned], threads)
    finally:
        for file in files.values():
            file.close()
    writer.finish(done=set(writer.files))
    stats.files = len(files)
    return stats
