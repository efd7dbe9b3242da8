"""Training data that arrives as a Hugging Face dataset, Parquet, JSONL, or any of these on S3.

Two ways in (docs/data.md):
- Rows of training.seq_len token ids in a save_to_disk folder on a file system (a SageMaker FastFile
  channel mounts S3 as one) are read in place: the Arrow files are memory-mapped by `datasets` and rows
  are fetched as the sampler asks for them (ArrowRows). Nothing is copied.
- Everything else is streamed once, record by record, and packed into the job's pack folder as our own
  packed shards: text is tokenized and packed as a JSONL corpus is, SFT records are encoded with their
  loss masks, token rows (with labels, or of other lengths) are written as rows or packed as documents.
  Local files are read through `datasets` (load_from_disk, or load_dataset streaming); s3:// objects are
  streamed through s3torchconnector (launcher/data_store.py), so the raw set never lands on the node.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from llm_launch.launcher.data_describe import IGNORE_LABEL, InputInfo, Layout, Schema
from llm_launch.launcher.data_store import LocalStore, S3Store, open_store
from llm_launch.train.data.packed import INDEX_FILE, write_masked_packed, write_packed

READ_BATCH = 1024
DATASET_INPUT_VERSION = "dataset-input-v1"


class ArrowRows:
    """Rows of input_ids (and the loss mask its labels give) of a save_to_disk folder, memory-mapped.

    Offers what the loader reads of a PackedDataset: len(), row(i), row_mask(i), has_loss_mask, seq_len,
    path and index (eos_id, for document masking)."""

    def __init__(self, path: str | Path, *, seq_len: int, eos_id: int, vocab_size: int):
        import datasets

        self.path = Path(path)
        dataset = datasets.load_from_disk(str(path))
        self.has_loss_mask = "labels" in dataset.column_names
        columns = ["input_ids", *(["labels"] if self.has_loss_mask else [])]
        for chunk in dataset.data.column("input_ids").chunks:  # list offsets only: no token is read
            lengths = np.asarray(chunk.value_lengths())
            if len(lengths) and (lengths != seq_len).any():
                raise ValueError(f"{path}: input_ids rows of {int(lengths.min())} to {int(lengths.max())} tokens, but "
                                 f"training.seq_len is {seq_len}; save rows of exactly {seq_len} tokens")
        self._rows = dataset.select_columns(columns).with_format("numpy")
        self.vocab_size = vocab_size
        self.index = {"seq_len": seq_len, "eos_id": eos_id, "num_rows": len(dataset), "source": str(path)}

    @property
    def seq_len(self) -> int:
        return self.index["seq_len"]

    def __len__(self) -> int:
        return self.index["num_rows"]

    def _record(self, i: int) -> dict:
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self._rows[i]

    def row(self, i: int) -> np.ndarray:
        ids = np.asarray(self._record(i)["input_ids"], dtype=np.int64)
        _check_vocab(ids, f"{self.path} row {i}", self.vocab_size)
        return ids

    def row_mask(self, i: int) -> np.ndarray | None:
        if not self.has_loss_mask:
            return None
        return (np.asarray(self._record(i)["labels"]) != IGNORE_LABEL).astype(np.uint8)


def reads_in_place(info: InputInfo, seq_len: int) -> bool:
    """Whether an input is read where it is (ArrowRows) rather than packed first."""
    return (info.layout is Layout.SAVED and info.schema is Schema.TOKENS and info.fixed_rows == seq_len
            and not info.location.startswith("s3://"))


def _check_vocab(ids, where: str, vocab_size: int) -> None:
    if len(ids) and (top := int(np.max(ids))) >= vocab_size:
        raise ValueError(f"{where}: token id {top} is beyond model.vocab_size ({vocab_size}); was the data tokenized "
                         "with another tokenizer?")


def _columns(info: InputInfo, text_field: str) -> list[str]:
    if info.schema is Schema.TOKENS:
        return [c for c in ("input_ids", "labels") if c in info.columns]
    if info.schema is Schema.TEXT:
        return [text_field]
    return [c for c in ("messages", "instruction", "input", "output") if c in info.columns]


def _s3_lines(raw) -> Iterator[bytes]:
    tail = b""
    while chunk := raw.read(1 << 20):
        lines = (tail + chunk).split(b"\n")
        tail = lines.pop()
        yield from lines
    if tail:
        yield tail


def _s3_records(store: S3Store, info: InputInfo, columns: list[str]) -> Iterator[tuple[str, dict]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    for name in info.files:
        where = store.where(name)
        with store.open(name, random_access=info.layout is Layout.PARQUET) as raw:
            if info.layout is Layout.JSONL:
                for number, line in enumerate(_s3_lines(raw), 1):
                    if line.strip():
                        try:
                            record = json.loads(line)
                        except ValueError as exc:
                            raise ValueError(f"{where}:{number}: not valid JSON ({exc}); fix or remove the line") \
                                from None
                        yield f"{where}:{number}", {c: record.get(c) for c in columns} if isinstance(record, dict) \
                            else record
                continue
            batches = (pa.ipc.open_stream(raw) if info.layout is Layout.SAVED
                       else pq.ParquetFile(raw).iter_batches(batch_size=READ_BATCH, columns=columns))
            row = 0
            for batch in batches:
                for record in batch.select(columns).to_pylist():
                    yield f"{where} row {row}", record
                    row += 1


def _local_records(store: LocalStore, info: InputInfo, columns: list[str]) -> Iterator[tuple[str, dict]]:
    import datasets

    if info.layout is Layout.SAVED:
        dataset = datasets.load_from_disk(info.location).select_columns(columns)
    else:
        builder = "parquet" if info.layout is Layout.PARQUET else "json"
        files = [store.where(name) for name in info.files]
        dataset = datasets.load_dataset(builder, data_files=files, split="train", streaming=True).select_columns(
            columns)
    for row, record in enumerate(dataset):
        yield f"{info.location} row {row}", record


def iter_records(info: InputInfo, text_field: str, region: str = "") -> Iterator[tuple[str, dict]]:
    """(place, record) of every row of an input, holding only the columns its schema reads."""
    store = open_store(info.location, region)
    columns = _columns(info, text_field)
    records = _s3_records(store, info, columns) if isinstance(store, S3Store) else _local_records(store, info, columns)
    # A column holds null where a record lacks the field (instruction and chat records side by side).
    return ((where, {k: v for k, v in record.items() if v is not None} if isinstance(record, dict) else record)
            for where, record in records)


def _key(info: InputInfo, job, region: str) -> str:
    """Cache key of a packed copy: the input's files (name, size, mtime or ETag), schema, tokenizer, seq_len."""
    from llm_launch.train.data.sft import tokenizer_files

    store = open_store(info.location, region)
    digest = hashlib.sha256(json.dumps([DATASET_INPUT_VERSION, info.location, info.schema.value,
                                        job.training.seq_len, job.training.data.text_field,
                                        [(n, store.version(n)) for n in info.files]]).encode())
    tokenizer_dir = Path(job.training.data.tokenizer_path)
    for path in (tokenizer_dir / "tokenizer.json", *tokenizer_files(tokenizer_dir)):
        digest.update(path.read_bytes() if path.is_file() else b"-")
    return digest.hexdigest()[:16]


def _token_rows(records, vocab_size: int) -> Iterator[tuple[str, list[int], list[int] | None]]:
    for where, record in records:
        ids = record.get("input_ids")
        if not isinstance(ids, list) or not all(isinstance(t, int) for t in ids):
            raise ValueError(f"{where}: input_ids is not a list of token ids")
        _check_vocab(ids, where, vocab_size)
        labels = record.get("labels")
        yield where, ids, labels


def pack_input(info: InputInfo, job, cache_root: Path, region: str = "") -> Path:
    """Stream an input once and write it as packed shards under cache_root (reused while current)."""
    from llm_launch.train.data.prepare import encode_texts, load_fast_tokenizer

    data, seq_len, vocab = job.training.data, job.training.seq_len, job.model.vocab_size
    key = _key(info, job, region)
    stem = Path(info.location.rstrip("/")).stem or "input"
    out = cache_root / f"{stem}-{info.schema.value}-seq{seq_len}-{key}"
    if (out / INDEX_FILE).is_file():
        return out
    print(f"packing {info.location} ({info.layout.value}, {info.schema.value}) for this job", flush=True)
    records = iter_records(info, data.text_field, region)
    tokenizer_dir = Path(data.tokenizer_path)
    metadata = {"source": info.location, "tokenizer": str(tokenizer_dir), "fingerprint": key,
                "input_layout": info.layout.value, "input_schema": info.schema.value}
    if info.schema is Schema.SFT:
        from llm_launch.launcher.jsonl import Tally
        from llm_launch.train.data.sft import pack_sft_records

        pack_sft_records(out, records, tokenizer_dir, seq_len, vocab, Tally(), metadata)
        return out
    tokenizer, eos_id = load_fast_tokenizer(tokenizer_dir)
    if info.schema is Schema.TEXT:
        texts = (_text(where, record, data.text_field) for where, record in records)
        write_packed(out, encode_texts(tokenizer, texts), seq_len=seq_len, eos_id=eos_id, vocab_size=vocab,
                     metadata=metadata)
    elif "labels" in info.columns:
        rows = ((_exact(ids, seq_len, where), _exact(_mask(labels, where), seq_len, where))
                for where, ids, labels in _token_rows(records, vocab))
        write_masked_packed(out, rows, seq_len=seq_len, eos_id=eos_id, pad_id=eos_id, vocab_size=vocab,
                            metadata=metadata)
    else:
        whole = info.fixed_rows == seq_len
        rows = (_exact(ids, seq_len, where) if whole else ids for where, ids, _ in _token_rows(records, vocab))
        write_packed(out, rows, seq_len=seq_len, eos_id=eos_id,
                     vocab_size=vocab, metadata=metadata, whole_rows=whole)
    return out


def _text(where: str, record: dict, text_field: str) -> str:
    text = record.get(text_field)
    if not isinstance(text, str):
        raise ValueError(f"{where}: '{text_field}' is {type(text).__name__}, not a string (training.data.text_field)")
    return text


def _mask(labels, where: str) -> list[int]:
    if not isinstance(labels, list):
        raise ValueError(f"{where}: labels is not a list")
    return [int(label != IGNORE_LABEL) for label in labels]


def _exact(values: list[int], seq_len: int, where: str) -> np.ndarray:
    if len(values) != seq_len:
        raise ValueError(f"{where}: {len(values)} tokens, but rows must be training.seq_len ({seq_len}) long")
    return np.asarray(values, dtype=np.int64)
