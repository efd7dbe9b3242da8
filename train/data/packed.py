"""Packed token shards: fixed-length rows of token ids, memory-mapped, with an index.

A dataset is a folder holding index.json and one or more shard files. Each shard is a flat
little-endian array of token ids (uint16 when the vocabulary fits, else uint32) holding
`rows` rows of `seq_len` tokens back to back. Documents are concatenated with the EOS id
after each one and cut into rows; the tail that does not fill a row is dropped and counted
in the index as remainder_tokens, so tokens in = rows x seq_len + remainder.

index.json:
    {"format": "llm-launch-packed", "version": 1, "seq_len": 256, "dtype": "uint16",
     "eos_id": 1, "num_rows": 977, "num_tokens": 250112, "remainder_tokens": 91,
     "documents": 1100, "source": "...", "tokenizer": "...",
     "shards": [{"file": "shard_00000.bin", "rows": 977}]}
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FORMAT_NAME = "llm-launch-packed"
FORMAT_VERSION = 1
INDEX_FILE = "index.json"


def token_dtype(vocab_size: int) -> np.dtype:
    """The narrowest unsigned dtype holding every token id."""
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


class RowPacker:
    """Concatenates documents with EOS after each and cuts the stream into full rows.

    After rows() is exhausted, `documents` counts the documents read and `remainder` the
    tokens of the tail that did not fill a row.
    """

    def __init__(self, seq_len: int, eos_id: int):
        self.seq_len, self.eos_id = seq_len, eos_id
        self.documents = 0
        self.remainder = 0

    def rows(self, documents: Iterable[list[int]]) -> Iterator[np.ndarray]:
        buffer: list[int] = []
        for tokens in documents:
            self.documents += 1
            buffer.extend(tokens)
            buffer.append(self.eos_id)
            while len(buffer) >= self.seq_len:
                yield np.asarray(buffer[: self.seq_len], dtype=np.int64)
                del buffer[: self.seq_len]
        self.remainder = len(buffer)


def write_packed(
    out_dir: Path,
    documents: Iterable[list[int]],
    *,
    seq_len: int,
    eos_id: int,
    vocab_size: int,
    rows_per_shard: int = 65536,
    metadata: dict | None = None,
) -> dict:
    """Write token documents as a packed dataset; atomic (a temporary folder, then a rename)."""
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    dtype = token_dtype(vocab_size)
    shards, current, rows_total = [], [], 0
    packer = RowPacker(seq_len, eos_id)

    def flush() -> None:
        name = f"shard_{len(shards):05d}.bin"
        np.stack(current).astype(dtype).tofile(tmp / name)
        shards.append({"file": name, "rows": len(current)})
        current.clear()

    for row in packer.rows(documents):
        current.append(row)
        rows_total += 1
        if len(current) == rows_per_shard:
            flush()
    if current:
        flush()
    index = {
        "format": FORMAT_NAME, "version": FORMAT_VERSION, "seq_len": seq_len, "dtype": dtype.name,
        "eos_id": eos_id, "num_rows": rows_total, "num_tokens": rows_total * seq_len,
        "remainder_tokens": packer.remainder, "documents": packer.documents,
        "shards": shards, **(metadata or {}),
    }
    (tmp / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return index


@dataclass
class PackedDataset:
    """Random access to the rows of a packed dataset, memory-mapped."""

    path: Path
    index: dict
    shards: list[np.memmap]
    offsets: list[int]

    @classmethod
    def open(cls, path: str | Path) -> PackedDataset:
        path = Path(path)
        index = json.loads((path / INDEX_FILE).read_text(encoding="utf-8"))
        if index.get("format") != FORMAT_NAME or index.get("version") != FORMAT_VERSION:
            raise ValueError(f"{path} is not an {FORMAT_NAME} v{FORMAT_VERSION} dataset")
        seq_len, dtype = index["seq_len"], np.dtype(index["dtype"])
        shards, offsets, start = [], [], 0
        for shard in index["shards"]:
            shards.append(np.memmap(path / shard["file"], dtype=dtype, mode="r", shape=(shard["rows"], seq_len)))
            offsets.append(start)
            start += shard["rows"]
        return cls(path, index, shards, offsets)

    @property
    def seq_len(self) -> int:
        return self.index["seq_len"]

    def __len__(self) -> int:
        return self.index["num_rows"]

    def row(self, i: int) -> np.ndarray:
        """Row i as int64 token ids."""
        if not 0 <= i < len(self):
            raise IndexError(i)
        shard = np.searchsorted(self.offsets, i, side="right") - 1
        return np.asarray(self.shards[shard][i - self.offsets[shard]], dtype=np.int64)
