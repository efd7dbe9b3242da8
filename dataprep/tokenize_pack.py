"""Work units to shards: tokenize with a Hugging Face fast tokenizer, pack into rows, write one shard.

A work unit is a JSONL file of selected documents ({"source": i, "text": ...} per line) holding about
output.shard_chars characters. Each unit becomes one shard file, packed on its own: documents are
concatenated with EOS after each and cut into seq_len rows; the tail that does not fill a row is
counted as that shard's remainder (index.json sums them). A shard is finished when its sidecar
shard_XXXXX.json (rows, tokens, fingerprint) exists: it is written atomically after the .bin, so a
rerun skips exactly the shards that were completed. Tokenization is batched and runs on the
tokenizer's own thread pool (RAYON_NUM_THREADS threads, every core by default).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from llm_launch.dataprep.mix import Doc
from llm_launch.launcher.jobfile import write_text_atomic
from llm_launch.train.data.packed import pack_documents
from llm_launch.train.file_check import sampled_sha256

ENCODE_BATCH = 512


def shard_name(number: int) -> str:
    return f"shard_{number:05d}"


def plan_units(docs: list[Doc], shard_chars: int) -> list[list[Doc]]:
    """Consecutive groups of documents of about shard_chars characters each (a group holds at least one)."""
    units: list[list[Doc]] = []
    current: list[Doc] = []
    size = 0
    for doc in docs:
        current.append(doc)
        size += len(doc.text)
        if size >= shard_chars:
            units.append(current)
            current, size = [], 0
    if current:
        units.append(current)
    return units


def write_unit(path: Path, docs: list[Doc]) -> None:
    lines = (json.dumps({"source": d.source, "text": d.text}, ensure_ascii=False) for d in docs)
    write_text_atomic(path, "".join(f"{line}\n" for line in lines))


def read_unit(path: Path) -> list[Doc]:
    with path.open(encoding="utf-8") as lines:
        return [Doc(r["source"], r["text"]) for r in map(json.loads, lines)]


def encode_texts(tokenizer, texts: list[str]) -> Iterator[list[int]]:
    """Token ids of each text, in order, encoded in batches on the tokenizer's thread pool."""
    encode = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)
    for start in range(0, len(texts), ENCODE_BATCH):
        yield from (e.ids for e in encode(texts[start:start + ENCODE_BATCH], add_special_tokens=False))


def finished_shard(out_dir: Path, number: int, fingerprint: str) -> dict | None:
    """The sidecar of a completed shard of this run (same fingerprint, .bin of the right size), else None."""
    try:
        meta = json.loads((out_dir / f"{shard_name(number)}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if meta.get("fingerprint") != fingerprint:
        return None
    if meta["rows"] == 0:
        return meta  # nothing filled a row: there is no .bin to check
    shard = out_dir / meta["file"]
    if not shard.is_file() or shard.stat().st_size != meta["bytes"]:
        return None
    return meta


def build_shard(unit: Path, out_dir: Path, number: int, *, tokenizer, eos_id: int, seq_len: int, dtype: np.dtype,
                fingerprint: str, num_sources: int) -> dict:
    """Tokenize and pack one work unit into shard `number` of out_dir; returns its sidecar."""
    return write_shard(read_unit(unit), out_dir, number, tokenizer=tokenizer, eos_id=eos_id, seq_len=seq_len,
                       dtype=dtype, fingerprint=fingerprint, num_sources=num_sources)


def write_shard(docs: list[Doc], out_dir: Path, number: int, *, tokenizer, eos_id: int, seq_len: int,
                dtype: np.dtype, fingerprint: str, num_sources: int) -> dict:
    """Tokenize and pack documents into shard `number` of out_dir (.bin, then its sidecar); returns the sidecar."""
    ids = list(encode_texts(tokenizer, [d.text for d in docs]))
    tokens_by_source = [0] * num_sources
    for doc, tokens in zip(docs, ids, strict=True):
        tokens_by_source[doc.source] += len(tokens) + 1
    flat, remainder, documents = pack_documents(ids, seq_len=seq_len, eos_id=eos_id, dtype=dtype)
    name = shard_name(number)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = flat.tobytes()
    if data:
        tmp = out_dir / f".{name}.bin.tmp-{os.getpid()}"
        tmp.write_bytes(data)
        os.replace(tmp, out_dir / f"{name}.bin")
    meta = {"file": f"{name}.bin", "rows": len(flat) // seq_len, "bytes": len(data), "documents": documents,
            "tokens_in": int(sum(tokens_by_source)), "remainder_tokens": remainder,
            "tokens_by_source": tokens_by_source, "sha256": hashlib.sha256(data).hexdigest(),
            "sampled_sha256": sampled_sha256(data),
            "fingerprint": fingerprint}
    write_text_atomic(out_dir / f"{name}.json", json.dumps(meta, indent=1) + "\n")
    return meta
