"""Builds the SFT and preference samples from the shipped KJV corpus (public domain).

    python data/sample/sft/build_sft_sample.py

Writes, next to this script:
    train.jsonl, valid.jsonl  instruction records ({instruction, input?, output}) and chat records
                              ({messages: [...]}) about the books, chapters and verses of the corpus
    preference.jsonl,         preference records ({prompt, chosen, rejected}), one per chapter: the right
    preference_valid.jsonl    verse is chosen, the first verse of the chapter seven on rejected
Deterministic: the records follow the corpus order; every 10th record goes to the valid file.
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE.parent / "corpus"
SYSTEM = "You answer questions about the King James Version of the Bible, quoting it exactly."


def chapters() -> list[tuple[str, list[str]]]:
    """(chapter id, verses) of the whole corpus in canonical order (train and valid interleaved back)."""
    rows = []
    for name in ("train.jsonl", "valid.jsonl"):
        rows += [json.loads(line) for line in (CORPUS / name).read_text(encoding="utf-8").splitlines()]
    books: list[str] = []
    for r in rows:
        book = r["id"].rsplit(" ", 1)[0]
        if book not in books:
            books.append(book)
    rows.sort(key=lambda r: (books.index(r["id"].rsplit(" ", 1)[0]), int(r["id"].rsplit(" ", 1)[1])))
    return [(r["id"], r["text"].split("\n")) for r in rows]


def records(chaps: list[tuple[str, list[str]]]) -> list[dict]:
    books: list[str] = []
    counts: dict[str, int] = {}
    for chapter, _ in chaps:
        book = chapter.rsplit(" ", 1)[0]
        counts[book] = counts.get(book, 0) + 1
        if book not in books:
            books.append(book)
    out: list[dict] = []
    for before, after in zip(books, books[1:], strict=False):
        out.append({"instruction": f"Which book follows {before}?", "output": f"{after} follows {before}."})
    for book in books:
        out.append({"instruction": "How many chapters does this book have?", "input": book,
                    "output": f"{book} has {counts[book]} chapters."})
    for chapter, verses in chaps[::12]:
        out.append({"messages": [{"role": "system", "content": SYSTEM},
                                 {"role": "user", "content": f"What is the first verse of {chapter}?"},
                                 {"role": "assistant", "content": verses[0]}]})
    for chapter, verses in chaps[5::24]:
        if len(verses) < 2:
            continue
        out.append({"messages": [{"role": "user", "content": f"Quote {chapter}:1."},
                                 {"role": "assistant", "content": verses[0]},
                                 {"role": "user", "content": "And the verse after it?"},
                                 {"role": "assistant", "content": verses[1]}]})
    for _, verses in chaps[7::30]:
        words = verses[0].split()
        half = len(words) // 2
        out.append({"instruction": "Continue this verse.", "input": " ".join(words[:half]),
                    "output": " ".join(words[half:])})
    return out


def preferences(chaps: list[tuple[str, list[str]]]) -> list[dict]:
    out = []
    for (chapter, verses), (_, other) in zip(chaps, chaps[7:], strict=False):
        if verses[0] == other[0]:  # many chapters open alike ("And the LORD spake unto Moses, saying,")
            continue
        out.append({"prompt": f"What is the first verse of {chapter}?", "chosen": verses[0], "rejected": other[0]})
    return out


def write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def main() -> None:
    chaps = chapters()
    rows = records(chaps)
    write(HERE / "train.jsonl", [r for i, r in enumerate(rows) if i % 10 != 9])
    write(HERE / "valid.jsonl", [r for i, r in enumerate(rows) if i % 10 == 9])
    pairs = preferences(chaps)
    write(HERE / "preference.jsonl", [r for i, r in enumerate(pairs) if i % 10 != 9])
    write(HERE / "preference_valid.jsonl", [r for i, r in enumerate(pairs) if i % 10 == 9])
    print(f"{len(rows)} SFT records ({sum(1 for i in range(len(rows)) if i % 10 == 9)} valid), "
          f"{len(preferences(chaps))} preference records")


if __name__ == "__main__":
    main()
