"""Hugging Face safetensors <-> NxD sharded checkpoints (model/dp_rank_00_tp_rank_XX_pp_rank_YY.pt).

Both directions know every output byte's place before writing: hf-to-nxd writes each shard's
torch.save archive with its records' space reserved (llm_launch.train.convert.nxd_archive), nxd-to-hf plans the
safetensors header. Most bytes are then whole rows of an input tensor, contiguous in the input
file, and move file to file inside the kernel (llm_launch.train.convert.filecopy): row slices of q/k/v,
gate/up, embeddings and lm_head, and each TP rank's rows on the way back. Column slices
(o_proj, down_proj) and casts are copied from the memory-mapped input into a small scratch
buffer a block of rows at a time (llm_launch.train.convert.pages.AssembledRows) and written with pwrite;
their pages are dropped once read, so memory stays at a few tensors per thread, never a shard or
the model. Writes run on `threads` threads.

The archives are what NxD's loader and torch.load(weights_only=True, mmap=True) read, written
without the per-record CRC32 (torch.load does not check it; computing it cost more than the
write). Replicated tensors (norms, and K/V heads under KV replication) must agree on every
rank; where they do not, the check names the replication order found (trn1 interleaved, trn2
blocked).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import torch
from llm_launch.train.convert.filecopy import FileRange, RangeCopier
from llm_launch.train.convert.hf_io import (
    PlannedTensor,
    SafetensorsFileWriter,
    SafetensorsReader,
    ShardedSafetensorsWriter,
)
from llm_launch.train.convert.layout import HW_BACKENDS, ModelShape, ShardLayout, nxd_shard_name
from llm_launch.train.convert.mapping import LM_HEAD, ShardTensor, hf_shapes, shard_tensor_shape, shard_tensors
from llm_launch.train.convert.nxd_archive import MODEL_SUBDIR, MappedShards, ShardArchives, Shards
from llm_launch.train.convert.pages import AssembledRows, release_mapped

KV_ORDER = {"trn1": "interleaved (trn1: rank r holds KV head r mod kv_heads)",
            "trn2": "blocked (trn2: rank r holds KV head r // kv_replicator)"}
Progress = Callable[[int], None]


def default_threads() -> int:
    """Writer threads: one per CPU this process may use (at most 8), each moving one tensor at a time."""
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
    """Most input bytes held at once over all threads (HF tensors read through the mapping until every
    rank has its part)."""
    files: int = 0
    """Files written."""
    _held: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def wrote(self, nbytes: int, progress: Progress | None, count: int = 1, read: int = 0) -> None:
        """Count tensors written (nbytes of data) and the bytes of input read for them."""
        with self._lock:
            self.tensors += count
            self.bytes_written += nbytes
            self.bytes_read += read
        if progress:
            progress(nbytes)

    def hold(self, nbytes: int) -> None:
        """Count tensor bytes taken (positive) or released (negative)."""
        with self._lock:
            self._held += nbytes
            self.peak_held_bytes = max(self.peak_held_bytes, self._held)


def _parallel(tasks: list[Callable[[], None]], threads: int) -> None:
    """Run the tasks on up to `threads` threads; the first failure is raised."""
    if threads <= 1 or len(tasks) <= 1:
        for task in tasks:
            task()
        return
    with ThreadPoolExecutor(max_workers=min(threads, len(tasks))) as pool:
        for future in [pool.submit(task) for task in tasks]:
            future.result()


def _file_ranges(reader: SafetensorsReader, tensor: ShardTensor, dtype: torch.dtype,
                 fds: dict[Path, int]) -> list[FileRange] | None:
    """The shard tensor as byte ranges of the input files when it is whole rows of inputs stored in
    its dtype, else None."""
    if tensor.cat_dim != 0:
        return None
    out = []
    for piece in tensor.pieces:
        stored = reader.stored[piece.hf_key]
        if piece.dim != 0 or not stored.shape or stored.dtype != dtype:
            return None
        for start, stop in piece.ranges or ((0, stored.shape[0]),):
            out.append(FileRange(fds[stored.path], stored.offset + start * stored.row_bytes,
                                 (stop - start) * stored.row_bytes))
    return out


def _assemble(reader: SafetensorsReader, tensor: ShardTensor, full: dict[str, tuple[int, ...]],
              dtype: torch.dtype) -> AssembledRows:
    """One shard tensor as views of the mapped input, to be copied once on its way out (column
    slices, a cast)."""
    sources = [reader.whole(piece.hf_key).narrow(piece.dim, start, stop - start)
               for piece in tensor.pieces
               for start, stop in piece.ranges or ((0, full[piece.hf_key][piece.dim]),)]
    return AssembledRows(shard_tensor_shape(tensor, full), dtype, tensor.cat_dim, tuple(sources))


def hf_to_nxd(reader: SafetensorsReader, out_dir: Path, shape: ModelShape, layout: ShardLayout, *,
              dtype: torch.dtype | None = None, progress: Progress | None = None,
              threads: int = 1, copier: RangeCopier | None = None) -> ConversionStats:
    """Write every shard of layout under out_dir/model/ from the HF checkpoint reader reads.

    Every shard's archive is written with its records' space reserved (write_skeleton, on a
    thread of its own, shard after shard); meanwhile, one HF tensor at a time and from `threads`
    threads, its bytes go to every shard that holds a part as soon as that shard's archive exists:
    row ranges file to file (copier), column slices and casts copied once on their way out from
    the mapped input, whose pages are released when the tensor is done.
    """
    model_dir = out_dir / MODEL_SUBDIR
    model_dir.mkdir(parents=True, exist_ok=True)
    full = hf_shapes(shape)
    copier = copier or RangeCopier()
    stats = ConversionStats()
    plans = {(t, p): shard_tensors(shape, layout, t, p, LM_HEAD in reader.stored)
             for p in range(layout.pp) for t in range(layout.tp)}

    def out_dtype(tensor: ShardTensor) -> torch.dtype:
        return dtype or reader.dtype(tensor.pieces[0].hf_key)

    # One task per HF tensor (with the tensors fused after it): each is read once for every rank.
    by_source: dict[str, list[tuple[tuple[int, int], ShardTensor]]] = {}
    for rank, tensors in plans.items():
        for tensor in tensors:
            by_source.setdefault(tensor.pieces[0].hf_key, []).append((rank, tensor))
    inputs: dict[Path, int] = {}
    skeletons = ShardArchives(model_dir, {rank: {t.nxd_key: (shard_tensor_shape(t, full), out_dtype(t))
                                                 for t in tensors} for rank, tensors in plans.items()})

    def fill(placements: list[tuple[tuple[int, int], ShardTensor]]) -> None:
        mapped: dict[str, int] = {}  # HF tensors read through the mapping: their pages are held until done
        for rank, tensor in placements:
            count = math.prod(shard_tensor_shape(tensor, full))
            parts = _file_ranges(reader, tensor, out_dtype(tensor), inputs)
            if parts is None:
                for key in {piece.hf_key for piece in tensor.pieces} - mapped.keys():
                    mapped[key] = reader.stored[key].nbytes
                    stats.hold(mapped[key])
                parts = [_assemble(reader, tensor, full, out_dtype(tensor))]
            fd, offsets = skeletons.ready(rank)
            nbytes = copier.write(parts, fd, offsets[tensor.nxd_key])
            stats.wrote(nbytes, progress, read=count * reader.stored[tensor.pieces[0].hf_key].element_size)
        for key, nbytes in mapped.items():  # read for every rank: its pages can go now
            release_mapped(reader.whole(key))
            stats.hold(-nbytes)

    try:
        for path in {stored.path for stored in reader.stored.values()}:
            inputs[path] = os.open(path, os.O_RDONLY)
        skeletons.start()
        _parallel([partial(fill, placements) for placements in by_source.values()], threads)
    finally:
        skeletons.close()
        for fd in inputs.values():
            os.close(fd)
    stats.files = len(plans)
    return stats


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
    offset: int | None = None
    """File offset of the segment's bytes in its shard when they are contiguous there."""


def _piece_offset(tensor: ShardTensor, index: int, full: dict[str, tuple[int, ...]]) -> int:
    return sum(piece.length(full[piece.hf_key][piece.dim]) for piece in tensor.pieces[:index])


def _segments(shards: Shards, shape: ModelShape, layout: ShardLayout,
              offsets: dict[tuple[int, int], dict[str, int | None]] | None = None,
              ) -> dict[str, tuple[int, list[_Segment]]]:
    """For each HF key: the dim it is split on and every shard's segment of it, sorted by position
    (with its file offset where offsets gives the shard tensor's and the segment is whole rows)."""
    full = hf_shapes(shape)
    out: dict[str, tuple[int, list[_Segment]]] = {}
    for rank, state in shards.items():
        for tensor in shard_tensors(shape, layout, rank[0], rank[1], _with_lm_head(shards, layout)):
            source = state[tensor.nxd_key]
            base = (offsets or {}).get(rank, {}).get(tensor.nxd_key) if tensor.cat_dim == 0 and source.dim() else None
            row_bytes = source[0].numel() * source.element_size() if base is not None else 0
            for index, piece in enumerate(tensor.pieces):
                position = _piece_offset(tensor, index, full)
                for start, stop in piece.ranges or ((0, full[piece.hf_key][piece.dim]),):
                    value = source.narrow(tensor.cat_dim, position, stop - start)
                    offset = base + position * row_bytes if base is not None else None
                    out.setdefault(piece.hf_key, (piece.dim, []))[1].append(
                        _Segment(start, stop, rank, value, offset))
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


def _hf_parts(dim: int, segments: list[_Segment], item: PlannedTensor,
              fds: dict[tuple[int, int], int]) -> list[FileRange | torch.Tensor | AssembledRows]:
    """The HF tensor's bytes in order: row segments as byte ranges of the shard files (or as they
    lie in the mapped shards), column segments and casts assembled on the way out."""
    unique = [s for i, s in enumerate(segments) if i == 0 or (s.start, s.stop) != (segments[i - 1].start,
                                                                                 segments[i - 1].stop)]
    if [s.start for s in unique] != [0] + [s.stop for s in unique[:-1]] or unique[-1].stop != item.shape[dim]:
        raise ValueError(f"{item.key}: the shards leave parts unset or overlap; check --tp, --kv-replicator and --hw")
    if dim == 0 and all(s.value.dtype == item.dtype and s.offset is not None for s in unique):
        return [FileRange(fds[s.rank], s.offset, s.value.numel() * s.value.element_size()) for s in unique]
    return [AssembledRows(item.shape, item.dtype, dim, tuple(s.value for s in unique))]


def nxd_to_hf(shards: MappedShards, writer_dir: Path, shape: ModelShape, layout: ShardLayout, *,
              max_shard_bytes: int, dtype: torch.dtype | None = None, progress: Progress | None = None,
              threads: int = 1, copier: RangeCopier | None = None) -> ConversionStats:
    """Rebuild the HF tensors from memory-mapped shards and write them as safetensors, from `threads` threads:
    whole-row segments file to file (copier), column segments and casts assembled in scratch."""
    full = hf_shapes(shape)
    segments = _segments(shards.states, shape, layout, shards.offsets)
    planned = [PlannedTensor(key, full[key], dtype or segments[key][1][0].value.dtype)
               for key in full if key in segments]
    writer = ShardedSafetensorsWriter(writer_dir, planned, max_shard_bytes, copier)
    stats = ConversionStats()
    files: dict[str, SafetensorsFileWriter] = {}
    inputs: dict[tuple[int, int], int] = {}

    def write_tensor(item: PlannedTensor) -> None:
        dim, pieces = segments[item.key]
        parts = _hf_parts(dim, pieces, item, inputs)
        files[writer.file_of[item.key]].write(item.key, parts)
        if not all(isinstance(part, FileRange) for part in parts):
            for piece in pieces:  # read through the mapping: drop its pages (a neighbour's shared page comes back)
                release_mapped(piece.value)
        stats.wrote(item.nbytes, progress, read=item.nbytes)

    try:
        for rank, path in shards.paths.items():
            inputs[rank] = os.open(path, os.O_RDONLY)
        files.update((name, writer.open_file(name)) for name in writer.files)
        if len(writer.files) >= threads:  # a file per thread: threads writing into one file queue on its inode
            def write_file(name: str) -> None:
                for item in writer.files[name]:
                    write_tensor(item)

            _parallel([partial(write_file, name) for name in writer.files], threads)
        else:
            _parallel([partial(write_tensor, item) for item in planned], threads)
    finally:
        for fd in inputs.values():
            os.close(fd)
        for file in files.values():
            file.close()
    writer.finish(done=set(writer.files))
    stats.files = len(files)
    return stats
