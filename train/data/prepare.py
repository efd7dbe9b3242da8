"""Packs a JSONL or plain-text corpus into packed shards at job start (rank 0; others wait).

The full data pipeline (filters, deduplication, mixing) writes the same format ahead of
time; this small writer lets a job start from a raw corpus, as the embedded default does.
A prepared copy is reused when its source file, tokenizer and seq_len are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from llm_launch.launcher.json_errors import json_error_text
from llm_launch.train.data.long_text import PIECE_CHARS, encode_long
from llm_launch.train.data.packed import INDEX_FILE, write_packed

if TYPE_CHECKING:
    from tokenizers import Tokenizer

ENCODE_BATCH = 256
PROGRESS_EVERY_S = 10.0


def _jsonl_text(raw: bytes, where: str, text_field: str) -> str | None:
    """The text field of one JSONL line (None for a blank line); a bad line raises naming where it is."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = raw[exc.start:exc.start + 1]
        raise ValueError(f"{where}: not valid UTF-8 (byte {exc.start + 1} of the line is {bad!r}); re-encode the file "
                         "as UTF-8 or remove the line") from None
    if not line.strip():
        return None
    try:
        record = json.loads(line.rstrip("\r\n"))  # so the error's column is on this line
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: not valid JSON ({json_error_text(exc)}); fix or remove the line") from None
    if not isinstance(record, dict) or text_field not in record:
        raise ValueError(f"{where}: no '{text_field}' field (set training.data.text_field)")
    text = record[text_field]
    if not isinstance(text, str):
        raise ValueError(f"{where}: '{text_field}' is a {type(text).__name__}, not a string; fix the line")
    return text


def iter_texts(path: Path, text_field: str, progress: PackingProgress | None = None) -> Iterator[str]:
    """Documents of a corpus: one per JSONL line (its text field), or the whole text file.

    A corpus read at job start is expected to be clean: the first line that is not UTF-8 or not JSON
    stops the job, naming the file and line (a data-preparation job counts and skips such lines).
    """
    if path.suffix == ".jsonl":
        with path.open("rb") as lines:
            start = 0
            for number, raw in enumerate(lines, 1):
                text = _jsonl_text(raw, f"{path}:{number}", text_field)
                end = lines.tell()
                del raw  # a long line's bytes are not kept while its text is tokenized
                if progress is not None:
                    progress.document(start, end)
                if text is not None:
                    yield text
                start = end
        return
    data = path.read_bytes()
    if progress is not None:
        progress.document(0, len(data))
    try:
        yield data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ValueError(f"{path}:{line}: not valid UTF-8 (byte {exc.start + 1} of the file is "
                         f"{data[exc.start:exc.start + 1]!r}); re-encode the file as UTF-8") from None


class PackingProgress:
    """Prints where packing a corpus stands, by bytes of the corpus tokenized, every PROGRESS_EVERY_S seconds (also
    within one long document) and once at the end."""

    def __init__(self, corpus: Path):
        self.corpus, self.total = corpus, corpus.stat().st_size
        self.started = self.last = time.monotonic()
        self.done = self.tokens = 0
        self.span = (0, 0)
        print(f"packing {corpus} ({self.total / 2**20:.1f} MiB) for this job", flush=True)

    def document(self, start: int, end: int) -> None:
        """The next document occupies bytes start..end of the corpus; everything before it is handed on."""
        self.span = (start, end)
        self.read(start)

    def within(self, characters: int, of: int) -> None:
        """Part of the current (long) document is tokenized: characters of its of."""
        start, end = self.span
        self.read(start + (end - start) * characters // max(1, of))

    def read(self, position: int) -> None:
        self.done = position
        self._maybe_print()

    def packed(self, tokens: int) -> None:
        self.tokens += tokens
        self._maybe_print()

    def _maybe_print(self) -> None:
        now = time.monotonic()
        if now - self.last >= PROGRESS_EVERY_S:
            self.last = now
            share = self.done / self.total if self.total else 1.0
            print(f"packing {self.corpus.name}: {self.done / 2**20:.1f} of {self.total / 2**20:.1f} MiB tokenized "
                  f"({share:.0%}), {self.tokens:,} tokens, {now - self.started:.0f} s", flush=True)

    def finish(self, index: dict) -> None:
        print(f"packed {self.corpus.name}: {index['num_rows']:,} rows from {index['documents']:,} documents in "
              f"{time.monotonic() - self.started:.1f} s", flush=True)


def fingerprint(path: Path, tokenizer_dir: Path, seq_len: int, *extra: Path | str) -> str:
    """Hash of the corpus, the tokenizer and seq_len (plus extra files or strings): the cache key."""
    digest = hashlib.sha256()
    for part in (path, tokenizer_dir / "tokenizer.json"):
        with part.open("rb") as data:  # read in blocks: a corpus is not held in memory to be hashed
            while block := data.read(1 << 20):
                digest.update(block)
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


def encode_texts(tokenizer: Tokenizer, texts: Iterable[str], progress: PackingProgress | None = None
                 ) -> Iterator[list[int]]:
    """Token ids of each text, encoded ENCODE_BATCH at a time by the fast tokenizer (no special tokens).

    A text longer than long_text.PIECE_CHARS is encoded in bounded pieces with the same ids (Continued items for
    all but its last piece; the packer adds EOS after the last)."""

    def encode(batch: list[str]) -> Iterator[list[int]]:
        for enc in tokenizer.encode_batch(batch, add_special_tokens=False):
            if progress is not None:
                progress.packed(len(enc.ids))
            yield enc.ids

    def piece_done(text: str) -> Callable[[int, int], None]:
        def report(characters: int, tokens: int) -> None:
            if progress is not None:
                progress.within(characters, len(text))
                progress.packed(tokens)
        return report

    batch: list[str] = []
    for text in texts:
        if len(text) > PIECE_CHARS:
            yield from encode(batch)  # the documents before it keep their order
            batch = []
            yield from encode_long(tokenizer, text, piece_chars=PIECE_CHARS, on_piece=piece_done(text))
            continue
        batch.append(text)
        if len(batch) == ENCODE_BATCH:
            yield from encode(batch)
            batch = []
    if batch:
        yield from encode(batch)


def prepare_corpus(corpus: Path, tokenizer_dir: Path, seq_len: int, cache_root: Path, text_field: str,
                   vocab_size: int) -> Path:
    """Return a packed dataset for corpus, writing it under cache_root unless a current copy exists."""
    key = fingerprint(corpus, tokenizer_dir, seq_len, f"text_field={text_field}")
    out = cache_root / f"{corpus.stem}-seq{seq_len}-{key}"
    if (out / INDEX_FILE).is_file():
        return out
    tokenizer, eos_id = load_fast_tokenizer(tokenizer_dir)
    progress = PackingProgress(corpus)
    documents = encode_texts(tokenizer, iter_texts(corpus, text_field, progress), progress)
    index = write_packed(out, documents, seq_len=seq_len, eos_id=eos_id, vocab_size=vocab_size,
                         metadata={"source": str(corpus), "tokenizer": str(tokenizer_dir), "fingerprint": key})
    progress.finish(index)
    return out
