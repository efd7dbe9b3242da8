"""One bucket of selected documents -> one packed shard of our format (train/data/packed.py).

Task k of the pack stage builds bucket k of the train split, then the valid split's buckets; it reads the
bucket's files in task order, shuffles them (seeded by seed, split and bucket) when shuffle is on, then
tokenizes and packs them (tokenize_pack.write_shard): shard_<bucket>.bin and its sidecar .json, which
carries the run's fingerprint. A shard whose sidecar is already there for this fingerprint is kept. `out` may
be an fsspec URL (s3://): the shard is built in a scratch folder and uploaded, sidecar last (used where the
hosts share no file system: SageMaker, whose host 0 then gathers the shards, pipeline.gather_shards).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
from datatrove.data import DocumentsPipeline
from datatrove.io import get_datafolder
from datatrove.pipeline.base import PipelineStep
from llm_launch.dataprep.blocks.mix import SPLITS
from llm_launch.dataprep.mix import Doc
from llm_launch.dataprep.tokenize_pack import finished_shard, write_shard
from llm_launch.train.data.packed import token_dtype

_TOKENIZERS: dict[str, tuple] = {}


def bucket_of(task: int, buckets: dict[str, int]) -> tuple[str, int]:
    """(split, bucket) that pack task `task` builds."""
    for split in SPLITS:
        if task < buckets[split]:
            return split, task
        task -= buckets[split]
    raise IndexError(task)


def tokenizer_of(path: str) -> tuple:
    """(tokenizer, eos_id, vocab size), loaded once per process."""
    if path not in _TOKENIZERS:
        from llm_launch.train.data.prepare import load_fast_tokenizer

        tokenizer, eos_id = load_fast_tokenizer(Path(path))
        _TOKENIZERS[path] = tokenizer, eos_id, tokenizer.get_vocab_size(with_added_tokens=True)
    return _TOKENIZERS[path]


class PackShard(PipelineStep):
    """Builds the shard of this task's bucket in <out>/<split>/."""

    name = "tokenize and pack"
    type = "🔢 - TOKENIZER"

    def __init__(self, work: str, out: str, buckets: dict[str, int], *, tokenizer_path: str, seq_len: int, seed: int,
                 shuffle: bool, fingerprint: str, num_sources: int):
        super().__init__()
        self.work, self.out, self.buckets = work, out, buckets
        self.tokenizer_path, self.seq_len, self.seed, self.shuffle = tokenizer_path, seq_len, seed, shuffle
        self.fingerprint, self.num_sources = fingerprint, num_sources

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        split, bucket = bucket_of(rank, self.buckets)
        remote = "://" in self.out
        with tempfile.TemporaryDirectory(prefix="pack-") as scratch:
            out_dir = Path(scratch if remote else self.out) / split
            if remote or finished_shard(out_dir, bucket, self.fingerprint) is None:
                self._build(split, bucket, out_dir)
            if remote:  # the .bin first, its sidecar (what marks it finished) last
                target = get_datafolder(f"{self.out.rstrip('/')}/{split}")
                for name in sorted(os.listdir(out_dir), key=lambda n: n.endswith(".json")):
                    target.put_file(str(out_dir / name), name)
        return
        yield

    def _build(self, split: str, bucket: int, out_dir: Path) -> None:
        folder = get_datafolder(self.work)
        docs = []
        for name in folder.list_files(f"buckets/{split}/{bucket:05d}", glob_pattern="*.jsonl"):
            with folder.open(name, "r") as lines:
                docs.extend(Doc(r["source"], r["text"]) for r in map(json.loads, lines))
        if self.shuffle:
            order = np.random.Generator(np.random.PCG64([self.seed, SPLITS.index(split), bucket])).permutation(len(docs))
            docs = [docs[int(i)] for i in order]
        tokenizer, eos_id, vocab = tokenizer_of(self.tokenizer_path)
        with self.track_time():
            meta = write_shard(docs, out_dir, bucket, tokenizer=tokenizer, eos_id=eos_id, seq_len=self.seq_len,
                               dtype=token_dtype(vocab), fingerprint=self.fingerprint, num_sources=self.num_sources)
        self.stat_update("rows", value=meta["rows"])
        self.stat_update("documents", value=len(docs))
