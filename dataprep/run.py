"""The whole pipeline, resumable and deterministic.

Phase 1, the plan (rank 0): read every source, normalise, filter and hash on a process pool,
deduplicate, mix, shuffle and split, then write the selected documents as work units (one per
future shard) and plan.json under <output>/.work/. A rerun with the same fingerprint reuses the plan.

Phase 2, the shards (every rank): shard units are dealt round robin over the ranks; each rank
tokenizes and packs its units, skipping shards already finished by an earlier run.

Phase 3, the summary (rank 0): index.json per split and manifest.json; the work folder is removed
unless output.keep_work. With several ranks, output.dir must be on a file system they all share.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from itertools import chain
from pathlib import Path

from llm_launch.dataprep.dedup import Deduplicator
from llm_launch.dataprep.manifest import (
    MANIFEST_FILE,
    run_fingerprint,
    split_summary,
    tokenizer_hashes,
    write_manifest,
    write_split_index,
)
from llm_launch.dataprep.mix import Doc, mix, split
from llm_launch.dataprep.process import available_cores, process_items
from llm_launch.dataprep.read import Item, iter_items
from llm_launch.dataprep.tokenize_pack import build_shard, finished_shard, plan_units, shard_name, write_unit
from llm_launch.launcher.config.schema import DataPrepConfig
from llm_launch.launcher.jobfile import write_text_atomic
from llm_launch.launcher.jsonl import Tally
from llm_launch.train.data.packed import INDEX_FILE, token_dtype
from llm_launch.train.data.prepare import load_fast_tokenizer
from tqdm import tqdm

SPLITS = ("train", "valid")
WORK_DIR = ".work"
PLAN_FILE = "plan.json"


class OutputInUse(Exception):
    """output.dir holds a finished dataset made from other inputs or settings."""


@dataclass
class Ranks:
    """This process's share of a multi-rank run and how to wait for the others."""

    rank: int = 0
    world: int = 1
    barrier: Callable[[], None] = field(default=lambda: None)


def _check_output(out: Path, fingerprint: str, overwrite: bool) -> None:
    try:
        previous = json.loads((out / MANIFEST_FILE).read_text(encoding="utf-8")).get("fingerprint")
    except (OSError, ValueError):
        return
    if previous != fingerprint and not overwrite:
        raise OutputInUse(f"{out} holds data prepared from other inputs or settings (fingerprint {previous}, this "
                          f"run {fingerprint}); set data_prep.output.dir to a new folder or "
                          "data_prep.output.overwrite=true")


def _finished_run(out: Path, fingerprint: str) -> dict | None:
    """The manifest of a completed run with this fingerprint whose every shard is still in place, else None."""
    try:
        manifest = json.loads((out / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if manifest.get("fingerprint") != fingerprint:
        return None
    for name, summary in manifest["splits"].items():
        if not (out / name / INDEX_FILE).is_file() or "work_units" not in summary:
            return None
        if any(finished_shard(out / name, k, fingerprint) is None for k in range(summary["work_units"])):
            return None
    return manifest


def open_output(cfg: DataPrepConfig, progress: bool) -> tuple[Path, str, dict | None]:
    """(output folder, this run's fingerprint, the manifest of this run already finished there, else None) of a
    resolved config; refuses a folder that holds data prepared from other inputs or settings (OutputInUse)."""
    if cfg.seq_len is None or cfg.tokenizer_path is None or cfg.seed is None or cfg.output.dir is None:
        raise ValueError("prepare_data needs seq_len, tokenizer_path, seed and output.dir resolved")
    out = Path(cfg.output.dir)
    fingerprint = run_fingerprint(cfg)
    _check_output(out, fingerprint, cfg.output.overwrite)
    done = _finished_run(out, fingerprint)
    if done is not None and progress:
        print(f"data prep: {out} already holds this run's data; nothing to do", flush=True)
    return out, fingerprint, done


def _load_plan(work: Path, fingerprint: str) -> dict | None:
    try:
        plan = json.loads((work / PLAN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return plan if plan.get("fingerprint") == fingerprint else None


def _counting(items: Iterator[Item], counts: list[dict]) -> Iterator[Item]:
    for item in items:
        counts[item.source]["documents_read"] += 1
        yield item


def _make_plan(cfg: DataPrepConfig, work: Path, fingerprint: str, progress: bool) -> dict:
    """Phase 1: everything up to the split, written as work units and plan.json (last)."""
    shutil.rmtree(work, ignore_errors=True)
    readers = [Tally() for _ in cfg.sources]
    counts = [{"documents_read": 0, "bad_input": 0, "filtered": 0, "duplicates": 0, "kept": 0} for _ in cfg.sources]
    bad, filtered = Tally(), Tally()
    dedup = Deduplicator(cfg.dedup)
    kept: list[list[Doc]] = [[] for _ in cfg.sources]
    items = _counting(chain.from_iterable(iter_items(i, s, readers[i]) for i, s in enumerate(cfg.sources)), counts)
    workers = cfg.workers or available_cores()
    results = process_items(items, cfg.filters, cfg.dedup, workers)
    for result in tqdm(results, desc="read, filter, dedup", unit="doc", disable=not progress, mininterval=2):
        count = counts[result.source]
        if result.bad:
            bad.add(result.bad, result.where, result.detail)
            count["bad_input"] += 1
        elif result.dropped:
            filtered.add(result.dropped, result.where)
            count["filtered"] += 1
        else:
            text = dedup.keep(result.units, result.where)
            if text is None:
                count["duplicates"] += 1
            else:
                kept[result.source].append(Doc(result.source, text))
                count["kept"] += 1
    for i, reader in enumerate(readers):
        counts[i]["bad_input"] += reader.total
        bad.merge(reader)
    seed = cfg.seed
    mixed, mix_stats = mix(kept, [s.weight for s in cfg.sources], seed, cfg.shuffle)
    train, valid = split(mixed, cfg.split.valid_fraction, seed)
    splits = {}
    for name, docs in zip(SPLITS, (train, valid), strict=True):
        units = plan_units(docs, cfg.output.shard_chars)
        for number, unit in enumerate(units):
            write_unit(work / name / f"{shard_name(number)}.jsonl", unit)
        splits[name] = {"units": len(units), "documents": len(docs), "chars": sum(len(d.text) for d in docs)}
    sources = [{"name": s.name, "path": s.path, "format": s.format, "weight": s.weight, **counts[i], **mix_stats[i]}
               for i, s in enumerate(cfg.sources)]
    plan = {"fingerprint": fingerprint, "splits": splits, "sources": sources, "bad_input": bad.to_dict(),
            "filtered": filtered.to_dict(), "dedup": dedup.tally.to_dict()}
    write_text_atomic(work / PLAN_FILE, json.dumps(plan, indent=1) + "\n")
    return plan


def _remove_stale(split_dir: Path, units: int) -> None:
    """Shards numbered past this run's last one, left by an earlier run with more data."""
    for path in split_dir.glob("shard_*"):
        number = path.name[len("shard_"):].split(".")[0]
        if number.isdigit() and int(number) >= units:
            path.unlink()


def _summarise(cfg: DataPrepConfig, plan: dict, out: Path, fingerprint: str, eos_id: int, vocab: int) -> dict:
    """Phase 3: index.json per split, manifest.json."""
    dtype = token_dtype(vocab)
    tokens_by_source = {name: [0] * len(cfg.sources) for name in SPLITS}
    summaries = {}
    for name in SPLITS:
        split_dir = out / name
        units = plan["splits"][name]["units"]
        if units == 0:
            shutil.rmtree(split_dir, ignore_errors=True)
            continue
        sidecars = [finished_shard(split_dir, k, fingerprint) for k in range(units)]
        missing = [shard_name(k) for k, s in enumerate(sidecars) if s is None]
        if missing:
            raise RuntimeError(f"{split_dir}: shards {', '.join(missing)} were not built; run again to build them")
        _remove_stale(split_dir, units)
        index = write_split_index(split_dir, sidecars, seq_len=cfg.seq_len, dtype=dtype, eos_id=eos_id,
                                  metadata={"source": "data_prep", "tokenizer": cfg.tokenizer_path,
                                            "fingerprint": fingerprint})
        summaries[name] = {"path": name, **split_summary(index, sidecars), "work_units": units}
        for sidecar in sidecars:
            for i, tokens in enumerate(sidecar["tokens_by_source"]):
                tokens_by_source[name][i] += tokens
    sources = [{**source, "tokens_in": {n: tokens_by_source[n][i] for n in summaries}}
               for i, source in enumerate(plan["sources"])]
    bad_total = sum(entry["count"] for entry in plan["bad_input"].values())
    manifest = {
        "fingerprint": fingerprint, "seed": cfg.seed, "seq_len": cfg.seq_len,
        "tokenizer": {"path": cfg.tokenizer_path, "files_sha256": tokenizer_hashes(Path(cfg.tokenizer_path)),
                      "eos_id": eos_id, "vocab_size": vocab, "dtype": dtype.name},
        "splits": summaries, "sources": sources,
        "filters": {"settings": asdict(cfg.filters), "dropped": plan["filtered"]},
        "dedup": {"settings": asdict(cfg.dedup), "removed": plan["dedup"]},
        "bad_input": {"total": bad_total, "kinds": plan["bad_input"]},
        "settings": {"shuffle": cfg.shuffle, "valid_fraction": cfg.split.valid_fraction,
                     "shard_chars": cfg.output.shard_chars},
    }
    write_manifest(out, manifest)
    if not cfg.output.keep_work:
        shutil.rmtree(out / WORK_DIR, ignore_errors=True)
    return manifest


def prepare_data(cfg: DataPrepConfig, ranks: Ranks | None = None, progress: bool = True) -> dict:
    """Run the pipeline for a resolved config (seq_len, tokenizer_path, seed and output.dir set).

    Returns the manifest on rank 0 and an empty dict on the others.
    """
    ranks = ranks or Ranks()
    out, fingerprint, done = open_output(cfg, progress)
    if done is not None:
        return done if ranks.rank == 0 else {}
    work = out / WORK_DIR
    if ranks.rank == 0 and _load_plan(work, fingerprint) is None:
        _make_plan(cfg, work, fingerprint, progress)
    ranks.barrier()
    plan = _load_plan(work, fingerprint)
    if plan is None:
        raise RuntimeError(f"{work / PLAN_FILE} is missing or from another run")
    tokenizer, eos_id = load_fast_tokenizer(Path(cfg.tokenizer_path))
    vocab = tokenizer.get_vocab_size(with_added_tokens=True)
    units = [(name, k) for name in SPLITS for k in range(plan["splits"][name]["units"])]
    mine = units[ranks.rank::ranks.world]
    built = 0
    for name, k in tqdm(mine, desc="tokenize and pack", unit="shard", disable=not progress):
        if finished_shard(out / name, k, fingerprint) is None:
            build_shard(work / name / f"{shard_name(k)}.jsonl", out / name, k, tokenizer=tokenizer, eos_id=eos_id,
                        seq_len=cfg.seq_len, dtype=token_dtype(vocab), fingerprint=fingerprint,
                        num_sources=len(cfg.sources))
            built += 1
    if progress:
        print(f"data prep: rank {ranks.rank} built {built} shard(s), skipped {len(mine) - built} finished",
              flush=True)
    ranks.barrier()
    if ranks.rank != 0:
        return {}
    return _summarise(cfg, plan, out, fingerprint, eos_id, vocab)
