"""The run's fingerprint, the index.json of each split and manifest.json.

The fingerprint covers everything that decides the shards' bytes: the settings (less the output
folder, worker count and housekeeping flags), every input file's path, size and modification time,
the tokenizer files and the pipeline version. Shards, work units and the plan carry it, so a rerun
reuses exactly what the same run produced. The manifest holds no timestamps: the same inputs and
seed give the same manifest.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
from llm_launch.dataprep.files import source_files
from llm_launch.launcher.config.schema import DataPrepConfig
from llm_launch.launcher.jobfile import write_text_atomic
from llm_launch.train.data.packed import INDEX_FILE, make_index

PIPELINE_VERSION = 3
"""2: MinHash shingles hashed per word (dataprep/blocks/dedup.py); 3: the mix and split seeded by a document's name
within its source (blocks/read.py MIX_KEY), not its path. A run's intermediates of an older version are not reused."""
MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = "llm-launch-data-manifest"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tokenizer_hashes(tokenizer_dir: Path) -> dict[str, str]:
    return {name: file_sha256(tokenizer_dir / name) for name in TOKENIZER_FILES if (tokenizer_dir / name).is_file()}


def run_fingerprint(cfg: DataPrepConfig) -> str:
    """Hash of everything that decides the output's bytes (see the module docstring)."""
    settings = asdict(cfg)
    settings.pop("workers")
    settings["output"] = {"shard_chars": cfg.output.shard_chars}
    inputs = []
    for source in cfg.sources:
        try:
            inputs.append([list(f) for f in source_files(source.path, source.format)])
        except OSError as exc:
            inputs.append(f"unreadable: {exc}")
    blob = json.dumps({"version": PIPELINE_VERSION, "settings": settings, "inputs": inputs,
                       "tokenizer": tokenizer_hashes(Path(cfg.tokenizer_path))}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def write_split_index(split_dir: Path, sidecars: list[dict], *, seq_len: int, dtype: np.dtype, eos_id: int,
                      metadata: dict) -> dict:
    """index.json of one split, listing the shards that hold at least one row (in shard order)."""
    checks = ("bytes", "sampled_sha256")  # sidecars of older runs lack the sampled hash
    shards = [{"file": s["file"], "rows": s["rows"], **{k: s[k] for k in checks if k in s}}
              for s in sidecars if s["rows"]]
    index = make_index(seq_len=seq_len, dtype=dtype, eos_id=eos_id, shards=shards,
                       remainder_tokens=sum(s["remainder_tokens"] for s in sidecars),
                       documents=sum(s["documents"] for s in sidecars), metadata=metadata)
    write_text_atomic(split_dir / INDEX_FILE, json.dumps(index, indent=2) + "\n")
    return index


def split_summary(index: dict, sidecars: list[dict]) -> dict:
    """Token accounting of one split: tokens_in (documents plus one EOS each) = tokens_packed + remainder."""
    return {"documents": index["documents"], "tokens_in": sum(s["tokens_in"] for s in sidecars),
            "rows": index["num_rows"], "tokens_packed": index["num_tokens"],
            "remainder_tokens": index["remainder_tokens"], "shards": len(index["shards"])}


def write_manifest(out_dir: Path, manifest: dict) -> Path:
    path = out_dir / MANIFEST_FILE
    write_text_atomic(path, json.dumps({"format": MANIFEST_FORMAT, "version": 1, **manifest}, indent=2) + "\n")
    return path
