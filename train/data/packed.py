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
     "shards": [{"file": "shard_00000.bin", "rows": 977, "bytes": 500224, "sampled_sha256": "..."}]}

Each shard entry records the file's size and a sampled hash (its size, first and last block and
evenly spaced blocks between; see sampled_sha256). Opening checks every shard against the index
(exists, holds exactly rows x seq_len tokens, same sampled hash), so a truncated, replaced or
re-written shard is named before training reads a row from it. Indexes written before the
checksum existed are checked by size only.

Fine-tuning data (train/data/sft.py) adds a loss mask: index.json has "loss_mask": true and "pad_id",
and each shard entry names a "mask_file" (shard_XXXXX.mask.bin), a flat uint8 array with one entry
per token id (1 = a token the model is trained to predict). Readers that ignore the mask still read
the token rows unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from llm_launch.train.data.long_text import Continued
from llm_launch.train.file_check import mismatch, sampled_sha256

FORMAT_NAME = "llm-launch-packed"
FORMAT_VERSION = 1
INDEX_FILE = "index.json"


class PackedDataError(ValueError):
    """A packed dataset that does not match its index.json; the message names the file and what to do."""


def shard_check(data: bytes | memoryview) -> dict:
    """The index fields that let a reader check a shard file: its size and sampled hash."""
    return {"bytes": len(data), "sampled_sha256": sampled_sha256(data)}


def token_dtype(vocab_size: int) -> np.dtype:
    """The narrowest unsigned dtype holding every token id."""
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


class RowPacker:
    """Concatenates documents with EOS after each and cuts the stream into full rows.

    A document may come in pieces (llm_launch.train.data.long_text.Continued for all but its last piece).

    After rows() is exhausted, `documents` counts the documents read and `remainder` the
    tokens of the tail that did not fill a row.
    """

    def __init__(self, seq_len: int, eos_id: int):
        self.seq_len, self.eos_id = seq_len, eos_id
        self.documents = 0
        self.remainder = 0

    def rows(self, documents: Iterable[list[int]]) -> Iterator[np.ndarray]:
        """Rows of seq_len token ids; linear in the tokens read, however long one document is."""
        for block in self.blocks(documents):
            yield from block

    def blocks(self, documents: Iterable[list[int]]) -> Iterator[np.ndarray]:
        """The rows as blocks (rows x seq_len arrays, views of the stream), one per document or piece that completes
        a row: one object per block, not per row, so a long document leaves no trail of small objects."""
        pending: list[np.ndarray] = []  # pieces not yet cut into rows, fewer than seq_len tokens before the last
        held = 0
        for tokens in documents:
            continued = isinstance(tokens, Continued)  # a piece of a long document: EOS only after its last piece
            self.documents += 0 if continued else 1
            piece = np.empty(len(tokens) + (0 if continued else 1), dtype=np.int64)
            piece[:len(tokens)] = tokens
            if not continued:
                piece[-1] = self.eos_id
            pending.append(piece)
            held += len(piece)
            if held < self.seq_len:
                continue
            stream = np.concatenate(pending) if len(pending) > 1 else piece
            whole = held - held % self.seq_len
            yield stream[:whole].reshape(-1, self.seq_len)
            pending = [stream[whole:]] if whole < held else []
            held -= whole
        self.remainder = held


def write_packed(
    out_dir: Path,
    documents: Iterable[list[int]],
    *,
    seq_len: int,
    eos_id: int,
    vocab_size: int,
    rows_per_shard: int = 65536,
    metadata: dict | None = None,
    whole_rows: bool = False,
) -> dict:
    """Write token documents as a packed dataset; atomic (a temporary folder, then a rename).

    With whole_rows, each document is already one row of exactly seq_len tokens (pre-tokenized data) and
    is written as it is, with no EOS added."""
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    dtype = token_dtype(vocab_size)
    shards: list[dict] = []
    current: list[np.ndarray] = []  # blocks of rows of the shard being filled, in the shard's dtype
    held = 0
    packer = RowPacker(seq_len, eos_id)

    def flush() -> None:
        name = f"shard_{len(shards):05d}.bin"
        data = np.concatenate(current).tobytes()
        (tmp / name).write_bytes(data)
        shards.append({"file": name, "rows": held, **shard_check(data)})
        current.clear()

    try:
        blocks = (row[None] for row in _whole_rows(documents, seq_len, packer)) if whole_rows \
            else packer.blocks(documents)
        for block in blocks:
            while len(block):
                take = block[:rows_per_shard - held]
                current.append(take.astype(dtype))  # a copy: a view would keep a long document's int64 stream alive
                held += len(take)
                block = block[len(take):]
                if held == rows_per_shard:
                    flush()
                    held = 0
        if current:
            flush()
    except BaseException:  # a bad document or a kill: leave no half-written folder behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    index = make_index(seq_len=seq_len, dtype=dtype, eos_id=eos_id, shards=shards, remainder_tokens=packer.remainder,
                       documents=packer.documents, metadata=metadata)
    _publish(tmp, out_dir, index)
    return index


def _whole_rows(rows: Iterable[list[int]], seq_len: int, packer: RowPacker) -> Iterator[np.ndarray]:
    for row in rows:
        if len(row) != seq_len:
            raise ValueError(f"a row of {len(row)} tokens among rows of {seq_len}")
        packer.documents += 1
        yield np.asarray(row, dtype=np.int64)


def make_index(*, seq_len: int, dtype: np.dtype, eos_id: int, shards: list[dict], remainder_tokens: int,
               documents: int, metadata: dict | None = None) -> dict:
    """The index.json of a packed dataset whose shards are listed (each with its "rows")."""
    rows_total = sum(shard["rows"] for shard in shards)
    return {
        "format": FORMAT_NAME, "version": FORMAT_VERSION, "seq_len": seq_len, "dtype": np.dtype(dtype).name,
        "eos_id": eos_id, "num_rows": rows_total, "num_tokens": rows_total * seq_len,
        "remainder_tokens": remainder_tokens, "documents": documents,
        "shards": shards, **(metadata or {}),
    }


def _publish(tmp: Path, out_dir: Path, index: dict) -> None:
    """Write index.json into the finished temporary folder and move it into place."""
    (tmp / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)


def pack_documents(documents: Iterable[list[int]], *, seq_len: int, eos_id: int,
                   dtype: np.dtype) -> tuple[np.ndarray, int, int]:
    """What RowPacker does, in one pass into a flat array: (rows x seq_len tokens, remainder, documents).

    The documents are concatenated with EOS after each; the array holds the whole rows, the remainder
    counts the tail tokens that did not fill one.
    """
    pieces: list[np.ndarray] = []
    for tokens in documents:
        piece = np.empty(len(tokens) + 1, dtype=dtype)
        piece[:-1] = tokens
        piece[-1] = eos_id
        pieces.append(piece)
    stream = np.concatenate(pieces) if pieces else np.empty(0, dtype=dtype)
    whole = len(stream) // seq_len * seq_len
    return stream[:whole], len(stream) - whole, len(pieces)


def write_masked_packed(
    out_dir: Path,
    rows: Iterable[tuple[np.ndarray, np.ndarray]],
    *,
    seq_len: int,
    eos_id: int,
    pad_id: int,
    vocab_size: int,
    rows_per_shard: int = 65536,
    metadata: dict | Callable[[], dict] | None = None,
) -> dict:
    """Write (token row, loss-mask row) pairs as a packed dataset with mask files; atomic like write_packed.

    metadata may be a function, called once every row is written (for counts known only then); if it
    raises, nothing is published.
    """
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    dtype = token_dtype(vocab_size)
    shards: list[dict] = []
    tokens: list[np.ndarray] = []
    masks: list[np.ndarray] = []

    def flush() -> None:
        name = f"shard_{len(shards):05d}"
        data = np.stack(tokens).astype(dtype).tobytes()
        mask_data = np.stack(masks).astype(np.uint8).tobytes()
        (tmp / f"{name}.bin").write_bytes(data)
        (tmp / f"{name}.mask.bin").write_bytes(mask_data)
        shards.append({"file": f"{name}.bin", "rows": len(tokens), **shard_check(data),
                       "mask_file": f"{name}.mask.bin", "mask_sampled_sha256": sampled_sha256(mask_data)})
        tokens.clear()
        masks.clear()

    try:
        for row, mask in rows:
            if len(row) != seq_len or len(mask) != seq_len:
                raise ValueError(f"rows must hold exactly {seq_len} tokens and mask entries")
            tokens.append(row)
            masks.append(mask)
            if len(tokens) == rows_per_shard:
                flush()
        if tokens:
            flush()
        extra = metadata() if callable(metadata) else metadata
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    index = make_index(seq_len=seq_len, dtype=dtype, eos_id=eos_id, shards=shards, remainder_tokens=0,
                       documents=0, metadata={"loss_mask": True, "pad_id": pad_id, **(extra or {})})
    _publish(tmp, out_dir, index)
    return index


REPACK = ("re-create the folder with the data preparation that wrote it (a corpus packed when the job started: "
          "delete the folder and run the job again to re-pack it)")


def read_index(path: Path, format_name: str, version: int) -> dict:
    """index.json of a data folder, checked to be the format and version the reader knows."""
    try:
        index = json.loads((path / INDEX_FILE).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PackedDataError(f"{path / INDEX_FILE}: not valid JSON ({exc}); {REPACK}") from None
    if not isinstance(index, dict) or index.get("format") != format_name or index.get("version") != version:
        raise PackedDataError(f"{path} is not an {format_name} v{version} dataset")
    return index


def _check_file(path: Path, expected_bytes: int, sampled: str | None, what: str) -> None:
    """Raise PackedDataError naming path unless it holds expected_bytes with the recorded sampled hash."""
    found = mismatch(path, expected_bytes, sampled)
    if found is None:
        return
    if found.kind == "missing":
        raise PackedDataError(f"{path}: missing, but {INDEX_FILE} lists it; {REPACK}")
    if found.kind == "size":
        state = "truncated" if found.size < expected_bytes else "longer than the index says"
        raise PackedDataError(f"{path}: {found.size} bytes, but {INDEX_FILE} lists {what} ({expected_bytes} bytes): "
                              f"the file is {state} or the index is stale; {REPACK}")
    raise PackedDataError(f"{path}: its content differs from the checksum in {INDEX_FILE} (overwritten or "
                          f"corrupt); {REPACK}")


def check_shards(path: Path, index: dict) -> None:
    """Every shard of a packed dataset against its index: present, exact size, same sampled hash."""
    seq_len, dtype = index["seq_len"], np.dtype(index["dtype"])
    rows = sum(shard["rows"] for shard in index["shards"])
    if rows != index["num_rows"]:
        raise PackedDataError(f"{path / INDEX_FILE}: num_rows is {index['num_rows']} but its shards list {rows} "
                              f"rows; {REPACK}")
    for shard in index["shards"]:
        what = f"{shard['rows']} rows of {seq_len} {dtype.name} tokens"
        _check_file(path / shard["file"], shard["rows"] * seq_len * dtype.itemsize, shard.get("sampled_sha256"),
                    what)
        if index.get("loss_mask"):
            _check_file(path / shard["mask_file"], shard["rows"] * seq_len, shard.get("mask_sampled_sha256"),
                        f"{shard['rows']} rows of {seq_len} mask bytes")


@dataclass
class PackedDataset:
    """Random access to the rows of a packed dataset, memory-mapped."""

    path: Path
    index: dict
    shards: list[np.memmap]
    offsets: list[int]
    masks: list[np.memmap] | None = None
    """Loss-mask shards (uint8, same shape as shards) when the index has "loss_mask": true."""

    @classmethod
    def open(cls, path: str | Path) -> PackedDataset:
        path = Path(path)
        index = read_index(path, FORMAT_NAME, FORMAT_VERSION)
        check_shards(path, index)
        seq_len, dtype = index["seq_len"], np.dtype(index["dtype"])
        shards, offsets, start = [], [], 0
        masks: list[np.memmap] | None = [] if index.get("loss_mask") else None
        for shard in index["shards"]:
            shards.append(np.memmap(path / shard["file"], dtype=dtype, mode="r", shape=(shard["rows"], seq_len)))
            if masks is not None:
                masks.append(np.memmap(path / shard["mask_file"], dtype=np.uint8, mode="r",
                                       shape=(shard["rows"], seq_len)))
            offsets.append(start)
            start += shard["rows"]
        return cls(path, index, shards, offsets, masks)

    @property
    def seq_len(self) -> int:
        return self.index["seq_len"]

    def __len__(self) -> int:
        return self.index["num_rows"]

    def row(self, i: int) -> np.ndarray:
        """Row i as int64 token ids."""
        if not 0 <= i < len(self):
            raise IndexError(i)
        shard = self._shard_of(i)
        return np.asarray(self.shards[shard][i - self.offsets[shard]], dtype=np.int64)

    def _shard_of(self, i: int) -> int:
        return int(np.searchsorted(self.offsets, i, side="right") - 1)

    @property
    def has_loss_mask(self) -> bool:
        """Whether rows come with a loss mask (fine-tuning data)."""
        return self.masks is not None

    def row_mask(self, i: int) -> np.ndarray | None:
        """Loss mask of row i (uint8, 1 = a token to learn to predict), or None without masks."""
        if self.masks is None:
            return None
        if not 0 <= i < len(self):
            raise IndexError(i)
        shard = self._shard_of(i)
        return np.asarray(self.masks[shard][i - self.offsets[shard]], dtype=np.uint8)
