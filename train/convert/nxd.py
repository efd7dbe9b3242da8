"""Hugging Face safetensors <-> NxD sharded checkpoints (model/dp_rank_00_tp_rank_XX_pp_rank_YY.pt).

hf-to-nxd writes one shard at a time, reading only that shard's slices of each HF tensor; the
memory held is one shard (model / (tp x pp) plus its embedding or lm_head slice), never the
model, except at tp = pp = 1 where the one shard is the model. nxd-to-hf memory-maps the
shards and rebuilds one HF tensor at a time into save_pretrained-style safetensors shards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from train.convert.hf_io import PlannedTensor, SafetensorsReader, ShardedSafetensorsWriter
from train.convert.layout import ModelShape, ShardLayout, nxd_shard_name
from train.convert.mapping import LM_HEAD, ShardTensor, hf_shapes, shard_tensor_shape, shard_tensors

MODEL_SUBDIR = "model"
Progress = Callable[[int], None]


@dataclass
class ConversionStats:
    """What a conversion moved, for the summary line and the benchmark."""

    tensors: int = 0
    """Tensors written."""
    bytes_written: int = 0
    """Bytes of tensor data written."""
    peak_held_bytes: int = 0
    """Most tensor bytes the converter held at once (one shard being assembled)."""
    files: int = 0
    """Files written."""

    def add_to_writer(self, writer, item, value, progress) -> None:
        """Hand one finished HF tensor to the safetensors writer and count it."""
        writer.add(item.key, value)
        self.tensors += 1
        self.bytes_written += item.nbytes
        self.peak_held_bytes = max(self.peak_held_bytes, writer.peak_pending_bytes + item.nbytes)
        if progress:
            progress(item.nbytes)


def shard_path(model_dir: Path, tp_rank: int, pp_rank: int) -> Path:
    return model_dir / nxd_shard_name(tp_rank, pp_rank)


def hf_to_nxd(reader: SafetensorsReader, out_dir: Path, shape: ModelShape, layout: ShardLayout, *,
              dtype: torch.dtype | None = None, progress: Progress | None = None) -> ConversionStats:
    """Write every shard of layout under out_dir/model/ from the HF checkpoint reader reads."""
    model_dir = out_dir / MODEL_SUBDIR
    model_dir.mkdir(parents=True, exist_ok=True)
    with_lm_head = LM_HEAD in reader.files
    stats = ConversionStats()
    for pp_rank in range(layout.pp):
        for tp_rank in range(layout.tp):
            state: dict[str, torch.Tensor] = {}
            held = 0
            for tensor in shard_tensors(shape, layout, tp_rank, pp_rank, with_lm_head):
                parts = [reader.read(p.hf_key, p.dim, p.ranges) for p in tensor.pieces]
                value = parts[0] if len(parts) == 1 else torch.cat(parts, dim=tensor.cat_dim)
                if dtype is not None:
                    value = value.to(dtype)
                state[tensor.nxd_key] = value.contiguous()
                size = value.numel() * value.element_size()
                held += size
                stats.peak_held_bytes = max(stats.peak_held_bytes, held)
                stats.tensors += 1
                stats.bytes_written += size
                if progress:
                    progress(size)
            torch.save(state, shard_path(model_dir, tp_rank, pp_rank))
            stats.files += 1
            del state
            reader.close()  # unmap the input, so its pages read for this shard leave our RSS
    return stats


def find_model_dir(path: Path) -> Path:
    """The folder holding the shards: path itself, or path/model (an NxD tag or converter output)."""
    return path / MODEL_SUBDIR if (path / MODEL_SUBDIR).is_dir() else path


def open_shards(model_dir: Path, layout: ShardLayout) -> tuple[dict[tuple[int, int], dict], list[tuple[str, str]]]:
    """Memory-map every shard of the layout; also report missing files."""
    shards, problems = {}, []
    for pp_rank in range(layout.pp):
        for tp_rank in range(layout.tp):
            path = shard_path(model_dir, tp_rank, pp_rank)
            if not path.is_file():
                problems.append((str(path), f"missing; a tp={layout.tp} pp={layout.pp} checkpoint has "
                                 f"{layout.tp * layout.pp} shards (check --tp/--pp)"))
                continue
            state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
            if isinstance(state, dict) and isinstance(state.get("model"), dict):
                state = state["model"]
            shards[(tp_rank, pp_rank)] = state
    return shards, problems


def shard_problems(shards: dict[tuple[int, int], dict], shape: ModelShape,
                   layout: ShardLayout) -> list[tuple[str, str]]:
    """Keys and shapes of every shard against what the config and layout expect."""
    full = hf_shapes(shape)
    with_lm_head = all(LM_HEAD in state for (tp, pp), state in shards.items() if pp == layout.pp - 1)
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


def _contributions(shards: dict[tuple[int, int], dict], shape: ModelShape, layout: ShardLayout,
                   with_lm_head: bool) -> dict[str, list[tuple[torch.Tensor, ShardTensor, int]]]:
    """For each HF key: (shard tensor, its description, index of the piece) that hold parts of it."""
    out: dict[str, list] = {}
    for (tp_rank, pp_rank), state in shards.items():
        for tensor in shard_tensors(shape, layout, tp_rank, pp_rank, with_lm_head):
            for i, piece in enumerate(tensor.pieces):
                out.setdefault(piece.hf_key, []).append((state[tensor.nxd_key], tensor, i))
    return out


def _piece_offset(tensor: ShardTensor, index: int, full: dict[str, tuple[int, ...]]) -> tuple[int, int]:
    offset = 0
    for i, piece in enumerate(tensor.pieces):
        length = piece.length(full[piece.hf_key][piece.dim])
        if i == index:
            return offset, length
        offset += length
    raise IndexError(index)


def nxd_to_hf(shards: dict[tuple[int, int], dict], writer_dir: Path, shape: ModelShape, layout: ShardLayout, *,
              max_shard_bytes: int, dtype: torch.dtype | None = None,
              progress: Progress | None = None) -> ConversionStats:
    """Rebuild the HF tensors from memory-mapped shards and write them as safetensors."""
    full = hf_shapes(shape)
    with_lm_head = all(LM_HEAD in state for (tp, pp), state in shards.items() if pp == layout.pp - 1)
    sources = _contributions(shards, shape, layout, with_lm_head)
    keys = [key for key in full if key in sources]
    planned = [PlannedTensor(key, full[key], dtype or sources[key][0][0].dtype) for key in keys]
    writer = ShardedSafetensorsWriter(writer_dir, planned, max_shard_bytes)
    stats = ConversionStats()
    for item in planned:
        value = torch.empty(item.shape, dtype=item.dtype)
        _, first_tensor, first_index = sources[item.key][0]
        dim = first_tensor.pieces[first_index].dim
        covered = torch.zeros(item.shape[dim], dtype=torch.bool)
        for source, tensor, index in sources[item.key]:
            piece = tensor.pieces[index]
            offset, length = _piece_offset(tensor, index, full)
            chunk = source.narrow(tensor.cat_dim, offset, length)
            if piece.ranges is None:
                value.copy_(chunk)
                covered[:] = True
                continue
            position = 0
            for start, stop in piece.ranges:
                value.narrow(dim, start, stop - start).copy_(chunk.narrow(dim, position, stop - start))
                covered[start:stop] = True
                position += stop - start
        if not bool(covered.all()):
            raise ValueError(f"{item.key}: the shards leave parts unset; check --tp, --kv-replicator and --hw")
        stats.add_to_writer(writer, item, value, progress)
    writer.finish()
    stats.files = len(set(writer.file_of.values()))
    return stats
