"""Synthetic corpora with planted near-duplicates, for the dedup-quality test and bench/data_prep.py.

Documents are random words from a seeded vocabulary (unrelated documents share almost no 5-word shingle).
A planted duplicate is a copy of an earlier document with a few words replaced, kept only if the Jaccard
similarity of the two documents' word-5-shingle sets (lower-cased, as both pipelines shingle) is >= 0.8;
a planted non-duplicate has more words replaced and is kept only if its similarity is <= 0.5.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SHINGLE = 5


def jaccard(a: str, b: str, size: int = SHINGLE) -> float:
    def grams(text: str) -> set[tuple[str, ...]]:
        words = text.lower().split()
        return {tuple(words[i:i + size]) for i in range(len(words) - size + 1)}

    x, y = grams(a), grams(b)
    return len(x & y) / len(x | y) if x | y else 1.0


@dataclass
class Corpus:
    texts: list[str] = field(default_factory=list)
    duplicates: list[tuple[int, int]] = field(default_factory=list)
    """(original, copy) at Jaccard >= 0.8."""
    distinct: list[tuple[int, int]] = field(default_factory=list)
    """(original, edited copy) at Jaccard <= 0.5."""


def _edit(rng: np.random.Generator, words: list[str], vocab: list[str], share: float) -> str:
    edited = list(words)
    for i in rng.choice(len(words), size=max(1, int(len(words) * share)), replace=False):
        edited[int(i)] = vocab[int(rng.integers(len(vocab)))]
    return " ".join(edited)


def make_corpus(documents: int, seed: int = 0, planted: float = 0.1, words: tuple[int, int] = (150, 400)) -> Corpus:
    """`documents` originals, then planted duplicates and non-duplicates (each about `planted` x documents)."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    chars = rng.choice(letters, size=(20000, 8))
    vocab = ["".join(row[:int(k)]) for row, k in zip(chars, rng.integers(2, 9, size=20000), strict=True)]
    corpus = Corpus()
    for _ in range(documents):
        n = int(rng.integers(*words))
        text = " ".join(vocab[int(i)] for i in rng.integers(len(vocab), size=n))
        # a few lines per document, so line-based filters see prose-like structure
        corpus.texts.append(text.replace(" ", "\n", 3) if n > 10 else text)
    for kind, shares, keep in (("duplicates", (0.004, 0.022), lambda j: j >= 0.8),
                               ("distinct", (0.075, 0.15), lambda j: j <= 0.5)):
        for original in rng.choice(documents, size=int(documents * planted), replace=False):
            copy = _edit(rng, corpus.texts[int(original)].split(), vocab, float(rng.uniform(*shares)))
            if keep(jaccard(corpus.texts[int(original)], copy)):
                getattr(corpus, kind).append((int(original), len(corpus.texts)))
                corpus.texts.append(copy)
    return corpus


def write_corpus(corpus: Corpus, folder: Path, files: int) -> list[Path]:
    """The corpus as `files` JSONL files of consecutive documents ({"id": i, "text": ...})."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    per = -(-len(corpus.texts) // files)
    for k in range(files):
        path = folder / f"part_{k:05d}.jsonl"
        rows = range(k * per, min(len(corpus.texts), (k + 1) * per))
        path.write_text("".join(json.dumps({"id": i, "text": corpus.texts[i]}) + "\n" for i in rows), encoding="utf-8")
        paths.append(path)
    return paths


def quality(corpus: Corpus, removed: set[int]) -> dict:
    """Recall (planted duplicate pairs with one member removed) and precision (removals that belong to a planted
    duplicate pair) of a set of removed document indices."""
    in_pairs = {i for pair in corpus.duplicates for i in pair}
    found = sum(1 for a, b in corpus.duplicates if (a in removed) != (b in removed))
    correct = len(removed & in_pairs)
    return {"pairs": len(corpus.duplicates), "non_duplicate_pairs": len(corpus.distinct), "removed": len(removed),
            "recall": found / len(corpus.duplicates) if corpus.duplicates else 1.0,
            "precision": correct / len(removed) if removed else 1.0}
