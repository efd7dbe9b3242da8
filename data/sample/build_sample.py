#!/usr/bin/env python3
"""Build the bundled sample corpus and tokenizer under data/sample/.

The corpus is the start of the King James Version of the Bible (public domain
in most countries; see README.md), taken from the Debian package bible-kjv:

    apt-get install bible-kjv
    python data/sample/build_sample.py

Steps:
  1. run `bible -m 8192 "Ge1:1-Re22:21"` to print the whole KJV;
  2. parse it into one document per chapter, {"id": "Genesis 1", "text": ...},
     one verse per line, verse numbers removed, whitespace normalised;
  3. keep whole books in canonical order while the running total of text stays
     within BUDGET_BYTES, and send every VALID_EVERY-th chapter of that subset
     to valid.jsonl and the rest to train.jsonl (corpus/);
  4. train a byte-level BPE tokenizer (vocab VOCAB_SIZE) on train.jsonl only and
     save it as a Hugging Face tokenizer folder (tokenizer/).

Everything is deterministic: two runs give byte-identical files. Tokenizer
training runs single-threaded (RAYON_NUM_THREADS=1) so that nothing depends on
thread scheduling.
"""

from __future__ import annotations

import os

# Must be set before `tokenizers` is imported (it starts its thread pool lazily,
# reading these on first use).
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["RAYON_RS_NUM_CPUS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import json  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
CORPUS_DIR = HERE / "corpus"
TOKENIZER_DIR = HERE / "tokenizer"

BIBLE_CMD = ["bible", "-m", "8192", "Ge1:1-Re22:21"]
BUDGET_BYTES = 1_500_000  # UTF-8 bytes of "text", summed over the selected chapters
VALID_EVERY = 20  # chapter i (0-based, over the selected subset) is valid when i % 20 == 19
VOCAB_SIZE = 2048
MODEL_MAX_LENGTH = 2048
BOS, EOS, PAD, UNK = "<s>", "</s>", "<pad>", "<unk>"
SPECIAL_TOKENS = [BOS, EOS, PAD, UNK]  # ids 0, 1, 2, 3

HEADING_RE = re.compile(r"^(?P<book>(?:[1-3] )?[A-Z][A-Za-z ]*?) (?P<chapter>[0-9]+)$")
VERSE_RE = re.compile(r"^ +(?P<num>[0-9]+) (?P<text>.*)$")


def run_bible() -> str:
    if shutil.which("bible") is None:
        sys.exit("build_sample.py: the `bible` command is missing; run `apt-get install bible-kjv` first.")
    env = dict(os.environ, LC_ALL="C.UTF-8", PAGER="cat")
    out = subprocess.run(
        BIBLE_CMD, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=env
    ).stdout
    return out.decode("utf-8")


def parse_chapters(raw: str) -> list[dict]:
    """One {"id", "book", "text"} per chapter, in canonical order.

    Input: for each chapter a blank line, a heading "Book N", a blank line, then
    verses "  V text..." whose text may wrap onto following unindented lines.
    """
    lines = raw.split("\n")
    chapters: list[dict] = []
    verses: list[list[str]] | None = None
    expected_verse = 0
    for i, line in enumerate(lines):
        if line.strip() == "":
            continue
        prev_blank = i == 0 or lines[i - 1].strip() == ""
        next_blank = i + 1 >= len(lines) or lines[i + 1].strip() == ""
        m = HEADING_RE.match(line)
        if m and prev_blank and next_blank:
            verses = []
            expected_verse = 1
            chapters.append({"id": line, "book": m.group("book"), "verses": verses})
            continue
        if verses is None:
            raise ValueError(f"text before the first chapter heading: {line!r}")
        v = VERSE_RE.match(line)
        if v:
            if int(v.group("num")) != expected_verse:
                raise ValueError(f"{chapters[-1]['id']}: verse {v.group('num')}, expected {expected_verse}")
            expected_verse += 1
            verses.append([v.group("text")])
        else:
            if not verses:
                raise ValueError(f"{chapters[-1]['id']}: continuation line before any verse: {line!r}")
            verses[-1].append(line)  # wrapped continuation of the current verse
    docs = []
    for ch in chapters:
        paragraphs = [" ".join(" ".join(parts).split()) for parts in ch["verses"]]
        if not paragraphs:
            raise ValueError(f"{ch['id']}: no verses")
        docs.append({"id": ch["id"], "book": ch["book"], "text": "\n".join(paragraphs)})
    return docs


def select_books(docs: list[dict], budget: int) -> list[dict]:
    """Whole books in canonical order, stopping before the first book that would exceed budget."""
    books: list[list[dict]] = []
    for d in docs:
        if not books or books[-1][0]["book"] != d["book"]:
            books.append([])
        books[-1].append(d)
    selected: list[dict] = []
    total = 0
    for book in books:
        size = sum(len(d["text"].encode("utf-8")) for d in book)
        if total + size > budget:
            break
        selected.extend(book)
        total += size
    return selected


def write_jsonl(path: Path, docs: list[dict]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for d in docs:
            f.write(json.dumps({"id": d["id"], "text": d["text"]}, ensure_ascii=False) + "\n")


def read_texts(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f if line.strip()]


def train_tokenizer(texts: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    # trim_offsets only fixes offsets; this post-processor adds no special tokens.
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    if tok.get_vocab_size() != VOCAB_SIZE:
        raise RuntimeError(f"trained vocab has {tok.get_vocab_size()} tokens, expected {VOCAB_SIZE}")
    return tok


def save_hf_tokenizer(tok, out_dir: Path):
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=MODEL_MAX_LENGTH,
        padding_side="right",
        clean_up_tokenization_spaces=False,
    )
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    hf.save_pretrained(str(out_dir))
    # transformers 5 records its own class name (TokenizersBackend), which
    # transformers 4.x cannot resolve; PreTrainedTokenizerFast loads in both.
    cfg_path = out_dir / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    text = json.dumps(cfg, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    cfg_path.write_text(text, encoding="utf-8")
    return hf


def main() -> None:
    raw = run_bible()
    docs = parse_chapters(raw)
    if len(docs) != 1189:
        raise RuntimeError(f"parsed {len(docs)} chapters, expected 1189")
    selected = select_books(docs, BUDGET_BYTES)
    train = [d for i, d in enumerate(selected) if i % VALID_EVERY != VALID_EVERY - 1]
    valid = [d for i, d in enumerate(selected) if i % VALID_EVERY == VALID_EVERY - 1]

    CORPUS_DIR.mkdir(parents=True, exist_ok=True)
    write_jsonl(CORPUS_DIR / "train.jsonl", train)
    write_jsonl(CORPUS_DIR / "valid.jsonl", valid)

    train_texts = read_texts(CORPUS_DIR / "train.jsonl")
    tok = train_tokenizer(train_texts)
    save_hf_tokenizer(tok, TOKENIZER_DIR)

    books = []
    for d in selected:
        if not books or books[-1] != d["book"]:
            books.append(d["book"])
    print(f"books: {books[0]} .. {books[-1]} ({len(books)} books, {len(selected)} chapters)")
    for name, split in (("train", train), ("valid", valid)):
        n_bytes = sum(len(d["text"].encode("utf-8")) for d in split)
        encodings = tok.encode_batch([d["text"] for d in split], add_special_tokens=False)
        n_tok = sum(len(e.ids) for e in encodings)
        print(
            f"{name}: {len(split)} chapters, {n_bytes} text bytes, {n_tok} tokens "
            f"({n_tok + len(split)} with one EOS per document)"
        )
    ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
    print(f"vocab size {tok.get_vocab_size()}; special token ids {ids}")


if __name__ == "__main__":
    main()
