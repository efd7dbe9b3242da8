"""The GPU engine's DCP checkpoints (train/gpu/checkpoint.py) <-> Hugging Face safetensors.

The engine saves {"model": <HF-named state>, "optim": ...}; DCP flattens that to keys
"model.<HF name>". dcp-to-hf reads the metadata, then loads the "model" entries one tensor at
a time with no process group (no_dist). hf-to-dcp writes a model-only DCP folder with the same
keys from memory-mapped safetensors (it has no trainer_state.json, so the engine does not take
it for a resumable checkpoint; its "model" group loads with torch.distributed.checkpoint).
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from llm_launch.train.convert.hf_io import PlannedTensor, ShardedSafetensorsWriter, mapped_tensors
from llm_launch.train.convert.layout import ModelShape
from llm_launch.train.convert.mapping import hf_shapes
from llm_launch.train.convert.nxd import ConversionStats, Progress
from llm_launch.train.gpu.checkpoint import DCP_METADATA, find_latest
from torch.distributed.checkpoint import FileSystemReader, FileSystemWriter
from torch.distributed.checkpoint.metadata import TensorStorageMetadata

MODEL_GROUP = "model"


@contextlib.contextmanager
def _single_process():
    """DCP warns on every no_dist call that it assumes one process, which is the intent here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


def resolve_dcp_dir(path: Path) -> Path:
    """A step folder, or the newest complete checkpoint of a checkpoints folder (its `latest`)."""
    if (path / DCP_METADATA).is_file():
        return path
    latest = find_latest(path)
    return latest if latest is not None else path


def dcp_model_entries(path: Path) -> dict[str, TensorStorageMetadata]:
    """HF name -> DCP tensor metadata of the "model" entries of a checkpoint."""
    metadata = FileSystemReader(str(path)).read_metadata()
    prefix = MODEL_GROUP + "."
    return {fqn[len(prefix):]: meta for fqn, meta in metadata.state_dict_metadata.items()
            if fqn.startswith(prefix) and isinstance(meta, TensorStorageMetadata)}


def dcp_to_hf(path: Path, out_dir: Path, shape: ModelShape, *, max_shard_bytes: int,
              dtype: torch.dtype | None = None, progress: Progress | None = None) -> ConversionStats:
    """Write the model of a DCP checkpoint as HF safetensors, loading one tensor at a time."""
    entries = dcp_model_entries(path)
    keys = [key for key in hf_shapes(shape) if key in entries]
    planned = [PlannedTensor(key, tuple(entries[key].size), dtype or entries[key].properties.dtype) for key in keys]
    writer = ShardedSafetensorsWriter(out_dir, planned, max_shard_bytes)
    stats = ConversionStats()
    for item in planned:
        meta = entries[item.key]
        value = torch.empty(tuple(meta.size), dtype=meta.properties.dtype)
        with _single_process():
            dcp.load({MODEL_GROUP: {item.key: value}}, storage_reader=FileSystemReader(str(path)), no_dist=True)
        writer.add(item.key, value.to(item.dtype))
        stats.wrote(item.nbytes, progress)
    writer.finish()
    stats.files = len(writer.files)
    return stats


def hf_to_dcp(hf_dir: Path, out_dir: Path, shape: ModelShape) -> ConversionStats:
    """Write a model-only DCP checkpoint {"model": <HF state>} from a HF folder, in its dtype."""
    mapped = mapped_tensors(hf_dir)
    state = {key: mapped[key] for key in hf_shapes(shape) if key in mapped}
    with _single_process():
        dcp.save({MODEL_GROUP: state}, storage_writer=FileSystemWriter(str(out_dir)), no_dist=True)
    return ConversionStats(tensors=len(state), bytes_written=sum(t.numel() * t.element_size() for t in state.values()),
                           files=len(list(out_dir.iterdir())))
