"""Packs a JSONL or plain-text corpus into packed shards at job start (rank 0; others wait).

The full data pipeline (filters, deduplication, mixing) writes the same format ahead of
time; this small writer lets a job start from a raw corpus, as the embedded default does.
A prepared copy is reused when its source file, tokenizer and seq_len are unchanged.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from train.data.packed import INDEX_FILE, write_packed

if TYPE_CHECKING:
    from tokenizers import Tokenizer

ENCODE_BATCH = 256


def iter_texts(path: Path, text_field: str) -> Iterator[str]:
    """Documents of a corpus: one per JSONL line (its text field), or the whole text file."""
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                record = json.loads(line)
                if text_field not in record:
                    raise ValueError(f"{path}:{number}: no '{text_field}' field (set training.data.text_field)")
                yield record[text_field]
    else:
        yield path.read_text(encoding="utf-8")


def fingerprint(path: Path, tokenizer_dir: Path, seq_len: int, *extra: Path | str) -> str:
    """Hash of the corpus, the tokenizer and seq_len (plus extra files or strings): the cache key."""
    digest = hashlib.sha256()
    for part in (path, tokenizer_dir / "tokenizer.json"):
        digest.update(part.read_bytes())
    digest.update(str(seq_len).encode())
    for part in extra:
        if isinstance(part, Path):
            digest.update(part.read_bytes() if part.is_file() else b"-")
        else:
            digest.update(part.encode())
    return digest.hexdigest()[:16]



def load_fast_tokenizer(tokenizer_dir: Path) -> tuple[Tokenizer, int]:
    """The fast (Rust) tokenizer of a Hugging Face tokenizer folder and its EOS id."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    config = json.loads((tokenizer_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    eos_id = tokenizer.token_to_id(config["eos_token"])
    if eos_id is None:
        raise ValueError(f"{tokenizer_dir}: eos_token {config['eos_token']!r} is not in the vocabulary")
    return tokenizer, eos_id


def prepare_corpus(corpus: Path, tokenizer_dir: Path, seq_len: int, cache_root: Path, text_field: str,
                   vocab_size: int) -> Path:
    """Return a packed dataset for corpus, writing it under cache_root unless a current copy exists."""
    key = fingerprint(corpus, tokenizer_dir, seq_len, f"text_field={text_field}")
    out = cache_root / f"{corpus.stem}-seq{seq_len}-{key}"
    if (out / INDEX_FILE).is_file():
        return out
    tokenizer, eos_id = load_fast_tokenizer(tokenizer_dir)

    def documents() -> Iterator[list[int]]:
        batch: list[str] = []
        for text in iter_texts(corpus, text_field):
            batch.append(text)
            if len(batch) == ENCODE_BATCH:
                yield from (enc.ids for enc in tokenizer.encode_batch(batch, add_special_tokens=False))
                batch = []
        if batch:
            yield from (enc.ids for enc in tokenizer.encode_batch(batch, add_special_tokens=False))

    write_packed(out, documents(), seq_len=seq_len, eos_id=eos_id, vocab_size=vocab_size,
                 metadata={"source": str(corpus), "tokenizer": str(tokenizer_dir), "fingerprint": key})
    return out
