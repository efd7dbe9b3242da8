"""Weighted mixing, the train/valid split and the shuffle, streaming and seeded (bounded memory).

The in-memory pipeline (dataprep/mix.py) drew exact character targets from permutations of every kept
document; here no task sees the corpus, so every choice is a seeded hash of the document's name (its place in
its source, the same wherever the source lies: read.py MIX_KEY), which any task computes alone:
- mixing: the source with the least kept text for its weight is used whole; a document of another source
  is selected with probability target/available characters of that source (mix_plan, from the kept counts);
- split: a selected document goes to validation with probability split.valid_fraction;
- order: with shuffle, a document goes to shard bucket hash % buckets and each bucket is shuffled (seeded)
  when it is packed (pack.py); without shuffle, buckets are consecutive runs of the kept text in reading
  order. Buckets hold about output.shard_chars characters each, so packing one holds one shard in memory.
"""

from __future__ import annotations

import hashlib
import json
import math

from datatrove.data import DocumentsPipeline
from datatrove.io import get_datafolder
from datatrove.pipeline.base import PipelineStep
from llm_launch.dataprep.blocks.read import MIX_KEY
from llm_launch.dataprep.blocks.reports import ReportingStep, TaskReport

KEPT_STEP = "kept"
MIX_FILE = "mix.json"
SPLITS = ("train", "valid")
_SELECT, _SPLIT, _ORDER = "select", "split", "order"


def unit_hash(seed: int, stage: str, name: str) -> float:
    """A number in [0, 1) fixed by (seed, stage, document name)."""
    digest = hashlib.blake2b(f"{seed}\0{stage}\0{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64


class CountKept(ReportingStep):
    """Counts kept documents and characters per source; every task's counts decide the mix (mix_plan)."""

    name = "count kept"
    type = "📊 - STATS"

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        report = TaskReport()
        for doc in data:
            report.count(doc.metadata["source"], "kept")
            report.count(doc.metadata["source"], "kept_chars", len(doc.text))
            yield doc
        report.save(self.work, KEPT_STEP, rank)


def mix_plan(kept_by_task: list[dict[int, dict[str, int]]], weights: list[float], valid_fraction: float,
             shard_chars: int) -> dict:
    """Selection probability per source, buckets per split and each task's character offset (reading order)."""
    chars = [sum(t.get(i, {}).get("kept_chars", 0) for t in kept_by_task) for i in range(len(weights))]
    docs = [sum(t.get(i, {}).get("kept", 0) for t in kept_by_task) for i in range(len(weights))]
    live = [i for i, c in enumerate(chars) if c > 0]
    total_weight = sum(weights[i] for i in live)
    scale = min((chars[i] / (weights[i] / total_weight) for i in live), default=0.0)
    probability = [min(1.0, weights[i] / total_weight * scale / chars[i]) if i in live else 0.0
                   for i in range(len(weights))]
    selected = sum(p * c for p, c in zip(probability, chars, strict=True))
    selected_docs = sum(p * d for p, d in zip(probability, docs, strict=True))
    valid = selected * valid_fraction if valid_fraction > 0 and selected_docs >= 2 else 0.0
    buckets = {"train": max(1, math.ceil((selected - valid) / shard_chars)),
               "valid": math.ceil(valid / shard_chars) if valid else 0}
    offsets, offset = [], 0
    for task in kept_by_task:
        offsets.append(offset)
        offset += sum(counts.get("kept_chars", 0) for counts in task.values())
    return {"probability": probability, "chars_available": chars, "documents_available": docs,
            "buckets": buckets, "task_offsets": offsets, "total_kept_chars": offset,
            "valid_fraction": valid_fraction if valid else 0.0}


class Scatter(PipelineStep):
    """Selects, splits and sends each kept document to its bucket: <work>/buckets/<split>/<bucket>/<rank>.jsonl."""

    name = "mix, split, scatter"
    type = "🔀 - MIX"

    def __init__(self, work: str, seed: int, shuffle: bool):
        super().__init__()
        self.work, self.seed, self.shuffle = work, seed, shuffle

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        folder = get_datafolder(self.work)
        with folder.open(MIX_FILE, "r") as f:
            plan = json.loads(f.read())
        report = TaskReport()
        offset = plan["task_offsets"][rank]
        total = max(1, plan["total_kept_chars"])
        with folder.get_output_file_manager(mode="w") as files:
            for doc in data:
                source = doc.metadata["source"]
                position, offset = offset, offset + len(doc.text)
                name = doc.metadata[MIX_KEY]
                if unit_hash(self.seed, _SELECT, name) >= plan["probability"][source]:
                    continue
                split = "valid" if unit_hash(self.seed, _SPLIT, name) < plan["valid_fraction"] else "train"
                buckets = plan["buckets"][split]
                bucket = (int(unit_hash(self.seed, _ORDER, name) * buckets) if self.shuffle
                          else min(buckets - 1, position * buckets // total))
                report.count(source, f"selected_{split}")
                report.count(source, "chars_selected", len(doc.text))
                report.count(source, "documents_selected")
                line = json.dumps({"source": source, "id": doc.id, "text": doc.text}, ensure_ascii=False)
                files.write(f"buckets/{split}/{bucket:05d}/{rank:05d}.jsonl", line + "\n")
                self.stat_update(f"selected_{split}")
        report.save(self.work, "scatter", rank)
        return
        yield
