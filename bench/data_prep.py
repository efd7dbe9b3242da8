"""Data-preparation throughput, beside baselines run in the same script.

1. Tokenize + pack: the pipeline's shard builder (read a work unit, encode in batches on the
   tokenizer's thread pool, pack rows with EOS, write the shard and its sidecar) against the
   tokenizer's raw batched encode (Tokenizer.encode_batch_fast, same batches, nothing else) of
   the same text. Reported as tokens/s and their ratio (1.0 = packing and writing cost nothing).
2. Near-dedup: documents/s through normalise + filters + MinHash (process pool of --workers)
   and the LSH cluster pass, and the MinHash + LSH pass alone on one process.
The corpus is the shipped KJV sample (298 chapters, 1.3 MB) repeated --copies times, each copy
with one word changed in every 100 (near duplicates of the first). Each measurement runs
--repeats times, alternating, and the median is kept.
Usage: python bench/data_prep.py [--copies N] [--repeats N] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from llm_launch.dataprep.dedup import Deduplicator
from llm_launch.dataprep.mix import Doc
from llm_launch.dataprep.process import available_cores, process_items
from llm_launch.dataprep.read import Item
from llm_launch.dataprep.tokenize_pack import ENCODE_BATCH, build_shard, plan_units, write_unit
from llm_launch.launcher import PROJECT_ROOT
from llm_launch.launcher.config.schema import DataFilterConfig, DedupConfig
from llm_launch.train.data.prepare import load_fast_tokenizer

SAMPLE = PROJECT_ROOT / "data" / "sample"
SEQ_LEN = 4096


def corpus(copies: int) -> list[str]:
    lines = (SAMPLE / "corpus" / "train.jsonl").read_text(encoding="utf-8").splitlines()
    base = [json.loads(line)["text"] for line in lines]
    texts = []
    for copy in range(copies):
        for text in base:
            words = text.split(" ")
            texts.append(" ".join(f"v{copy}" if copy and i % 100 == 7 else w for i, w in enumerate(words)))
    return texts


def raw_encode(tokenizer, texts: list[str]) -> int:
    tokens = 0
    for start in range(0, len(texts), ENCODE_BATCH):
        tokens += sum(len(e.ids) for e in tokenizer.encode_batch_fast(texts[start:start + ENCODE_BATCH],
                                                                     add_special_tokens=False))
    return tokens


def pipeline_pack(tokenizer, eos: int, units: list[Path], out: Path) -> int:
    tokens = 0
    for number, unit in enumerate(units):
        meta = build_shard(unit, out, number, tokenizer=tokenizer, eos_id=eos, seq_len=SEQ_LEN,
                           dtype=np.dtype(np.uint16), fingerprint="bench", num_sources=1)
        tokens += meta["tokens_in"] - meta["documents"]  # count text tokens only, as the baseline does
    return tokens


def timed(fn) -> tuple[float, int]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def dedup_pass(texts: list[str], workers: int, near_only: bool) -> int:
    dedup_cfg = DedupConfig()
    filters = DataFilterConfig(max_duplicate_ngram_fraction=1.0, max_duplicate_line_fraction=1.0)
    items = (Item(0, str(i), "jsonl", text=t) for i, t in enumerate(texts))
    if near_only:
        from llm_launch.dataprep.dedup import MinHasher, Unit, digest

        hasher = MinHasher(dedup_cfg.num_perm, dedup_cfg.shingle_size)
        results = ([Unit(t, digest(t), hasher.signature(t))] for t in texts)
    else:
        results = (r.units for r in process_items(items, filters, dedup_cfg, workers))
    dedup = Deduplicator(dedup_cfg)
    kept = sum(dedup.keep(units, "x") is not None for units in results)
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=0, help="0: every core")
    args = parser.parse_args()
    workers = args.workers or available_cores()
    texts = corpus(args.copies)
    tokenizer, eos = load_fast_tokenizer(SAMPLE / "tokenizer")
    work = Path(tempfile.mkdtemp(prefix="data-prep-bench-"))
    units = []
    for number, unit in enumerate(plan_units([Doc(0, t) for t in texts], 1_000_000)):
        path = work / "units" / f"shard_{number:05d}.jsonl"
        write_unit(path, unit)
        units.append(path)
    raw_times, pack_times = [], []
    raw_tokens = pack_tokens = 0
    for _ in range(args.repeats):
        seconds, raw_tokens = timed(lambda: raw_encode(tokenizer, texts))
        raw_times.append(seconds)
        seconds, pack_tokens = timed(lambda: pipeline_pack(tokenizer, eos, units, work / "out"))
        pack_times.append(seconds)
    assert raw_tokens == pack_tokens, (raw_tokens, pack_tokens)
    raw_s, pack_s = statistics.median(raw_times), statistics.median(pack_times)
    print(f"corpus: {len(texts)} documents, {sum(map(len, texts)):,} characters, {raw_tokens:,} tokens; "
          f"{len(units)} work units; seq_len {SEQ_LEN}; RAYON_NUM_THREADS={os.environ.get('RAYON_NUM_THREADS', 'all')}"
          f"; {available_cores()} cores; Python {platform.python_version()}")
    print("| path | median s | tokens/s | vs raw encode |")
    print("|---|---:|---:|---:|")
    print(f"| raw encode_batch_fast | {raw_s:.3f} | {raw_tokens / raw_s:,.0f} | 1.00 |")
    print(f"| tokenize + pack + write shards | {pack_s:.3f} | {pack_tokens / pack_s:,.0f} | "
          f"{(pack_tokens / pack_s) / (raw_tokens / raw_s):.2f} |")

    rows = []
    for label, workers_used, near_only in (("MinHash + LSH only, 1 process", 1, True),
                                           ("normalise + filters + MinHash + LSH, 1 process", 1, False),
                                           (f"normalise + filters + MinHash + LSH, {workers} processes", workers,
                                            False)):
        times, kept = [], 0
        for _ in range(args.repeats):
            seconds, kept = timed(lambda w=workers_used, n=near_only: dedup_pass(texts, w, n))
            times.append(seconds)
        seconds = statistics.median(times)
        rows.append((label, seconds, len(texts) / seconds, kept))
    print("| near-dedup path | median s | documents/s | kept of "f"{len(texts)} |")
    print("|---|---:|---:|---:|")
    for label, seconds, rate, kept in rows:
        print(f"| {label} | {seconds:.3f} | {rate:,.0f} | {kept} |")


if __name__ == "__main__":
    main()
