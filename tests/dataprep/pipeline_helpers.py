"""Helpers shared by the data-preparation tests: realistic documents and a resolved config."""

from __future__ import annotations

import json
from pathlib import Path

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
