"""Helpers shared by the data-preparation tests: realistic documents and a resolved config."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from llm_launch.launcher import PROJECT_ROOT
from llm_launch.launcher.config.schema import DataPrepConfig, DataSourceConfig

SAMPLE = PROJECT_ROOT / "data" / "sample"
TOKENIZER = SAMPLE / "tokenizer"


def chapters(count: int, start: int = 0) -> list[str]:
    """Real prose: KJV chapters of the shipped sample corpus."""
    lines = (SAMPLE / "corpus" / "train.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["text"] for line in lines[start:start + count]]


def write_jsonl(path: Path, records: list[object]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def prep_config(out: Path, *sources: DataSourceConfig, **settings) -> DataPrepConfig:
    """A resolved config on the sample tokenizer, lenient filters, one worker, no validation split."""
    cfg = DataPrepConfig(sources=list(sources), seq_len=64, tokenizer_path=str(TOKENIZER), seed=7, workers=1)
    cfg.filters.max_duplicate_ngram_fraction = 1.0
    cfg.filters.max_duplicate_line_fraction = 1.0
    cfg.split.valid_fraction = 0.0
    cfg.output.dir = str(out)
    for key, value in settings.items():
        target = cfg
        *parents, leaf = key.split("__")
        for parent in parents:
            target = getattr(target, parent)
        setattr(target, leaf, value)
    return cfg


def kjv_source(folder: Path, count: int = 40, name: str = "kjv", start: int = 0) -> DataSourceConfig:
    """KJV chapters as a JSONL source."""
    records = [{"id": i, "text": t} for i, t in enumerate(chapters(count, start))]
    path = write_jsonl(folder / f"{name}.jsonl", records)
    return DataSourceConfig(name=name, path=str(path), id_field="id")


PIECES = ["the", "word", "Long", "extraordinarily", "a", "x", "...", "—", "!!", "#", "«quoted»", "don't", "3.14",
          "１２", "naïve", "İstanbul", "ÆSIR", "e.g.", "-", "…", "日本語", "tab\tsep", "non\u00a0break", "em\u2003sp"]
SEPARATORS = [" ", " ", " ", "\n", "\n\n", "  ", "\t", "\u2028", "\u3000"]


def edge_texts(count: int, seed: int = 0) -> list[str]:
    """Texts that hit each check's edges: punctuation-only and digit words, non-ASCII letters, Unicode
    whitespace, repeated lines and repeated n-grams, near-empty texts."""
    rng = np.random.default_rng(seed)
    texts = ["", " ", "\n\n", "...", "word", "! ? .", "a\na\na\na", "one two three four five " * 6,
             "line one\nline one\nline two\nline one\n", *chapters(3)]
    for _ in range(count):
        words = [PIECES[i] for i in rng.integers(0, len(PIECES), int(rng.integers(0, 120)))]
        if words and rng.random() < 0.3:  # repeat a run of words (duplicate n-grams)
            start = int(rng.integers(0, len(words)))
            words += words[start:start + int(rng.integers(1, 12))] * int(rng.integers(1, 4))
        text = "".join(w + SEPARATORS[int(rng.integers(0, len(SEPARATORS)))] for w in words)
        if rng.random() < 0.3:  # repeat whole lines
            lines = text.split("\n")
            text = "\n".join(lines + lines[: int(rng.integers(0, len(lines) + 1))])
        texts.append(text)
    return texts
