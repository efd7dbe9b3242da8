"""Data inputs written the way users write them: `datasets`' save_to_disk and to_parquet on the shipped
sample (text, fixed-length token rows, labelled token rows, SFT records), plus JSONL copies."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from llm_launch.launcher import PROJECT_ROOT

SAMPLE = PROJECT_ROOT / "data" / "sample"
TOKENIZER = SAMPLE / "tokenizer"
SEQ_LEN = 64
DOCUMENTS = 24


@dataclass
class Inputs:
    root: Path
    texts: list[str]
    sft: list[dict]

    def __getattr__(self, name: str) -> Path:
        return self.root / name


def _token_rows(texts: list[str]) -> list[list[int]]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(TOKENIZER / "tokenizer.json"))
    ids = [t for enc in tokenizer.encode_batch(texts, add_special_tokens=False) for t in enc.ids]
    return [ids[i:i + SEQ_LEN] for i in range(0, len(ids) - SEQ_LEN + 1, SEQ_LEN)]


def write_inputs(root: Path) -> Inputs:
    import datasets

    datasets.disable_progress_bars()
    lines = (SAMPLE / "corpus" / "train.jsonl").read_text(encoding="utf-8").splitlines()[:DOCUMENTS]
    texts = [json.loads(line)["text"][:2000] for line in lines]
    sft = [json.loads(line) for line in (SAMPLE / "sft" / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    root.mkdir(parents=True, exist_ok=True)
    (root / "text.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    (root / "sft.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sft), encoding="utf-8")
    text = datasets.Dataset.from_dict({"text": texts})
    text.save_to_disk(str(root / "text_saved"))
    (root / "text_parquet").mkdir()
    text.select(range(DOCUMENTS // 2)).to_parquet(str(root / "text_parquet" / "part-0.parquet"))
    text.select(range(DOCUMENTS // 2, DOCUMENTS)).to_parquet(str(root / "text_parquet" / "part-1.parquet"))
    rows = _token_rows(texts)
    datasets.Dataset.from_dict({"input_ids": rows}).save_to_disk(str(root / "tokens_saved"), num_shards=2)
    labels = [[-100] * (SEQ_LEN // 2) + row[SEQ_LEN // 2:] for row in rows]
    datasets.Dataset.from_dict({"input_ids": rows, "labels": labels}).save_to_disk(str(root / "labelled_saved"))
    import pyarrow as pa

    sft_set = datasets.Dataset(pa.Table.from_struct_array(pa.array(sft)))  # instruction and chat: every field
    sft_set.save_to_disk(str(root / "sft_saved"))
    sft_set.to_parquet(str(root / "sft.parquet"))
    return Inputs(root, texts, sft)
