"""task=prepare as DataTrove pipelines: the stages built from the data_prep section, run on every host.

Stages (each a LocalPipelineExecutor run of `tasks` tasks; hosts meet at a barrier after each, executors.py):
    filter           read our sources, extract, normalise, quality filters [, split paragraphs]; write the kept
                     documents to <work>/filtered/<task>.jsonl [, DataTrove's exact-dedup signatures] [, MinHash
                     signatures, every band's hashes kept for the verification]
    find_duplicates  DataTrove ExactFindDedups over every task's signatures (hash ranges split over tasks) and,
                     in the same tasks (no barrier is needed between them), DataTrove MinhashDedupBuckets (candidate
                     pairs per LSH band) then ours: keep the candidates whose estimated Jaccard similarity reaches
                     dedup.threshold; as many tasks as filter (at most one per hash range and per band)
    minhash_cluster  DataTrove MinhashDedupCluster (one task): which documents to remove
    dedup_filter     DataTrove ExactDedupFilter and MinhashDedupFilter over <work>/filtered [, join paragraphs];
                     count kept text per source; write <work>/kept/
    mix              host 0: selection probability per source and shard buckets per split (<work>/mix.json)
    scatter          select, split and send each document to its bucket (blocks/mix.py)
    pack             one task per bucket: shuffle, tokenize, pack, write shard_<bucket>.bin and its sidecar
then host 0 writes each split's index.json and manifest.json (run._summarise, the in-memory pipeline's).

Memory per task is bounded by its own input (a task reads about data_prep.task_bytes of input files, a pack
task one shard's text), not by the corpus: no stage holds the corpus. DataTrove's MinhashDedupCluster (one
task) holds the duplicate pairs' union-find, which grows with the number of near-duplicates found.
Intermediates live under <output.work_dir or output.dir/.work>/<fingerprint>/, on any fsspec file system
(local, shared, s3://); a rerun of the same settings and inputs skips every finished task.
"""

from __future__ import annotations

import json
from pathlib import Path

from datatrove.io import get_datafolder
from datatrove.pipeline.dedup.exact_dedup import (
    ExactDedupConfig,
    ExactDedupFilter,
    ExactFindDedups,
)
from datatrove.pipeline.dedup.minhash import (
    MinhashConfig,
    MinhashDedupBuckets,
    MinhashDedupCluster,
    MinhashDedupFilter,
)
from datatrove.pipeline.writers.jsonl import JsonlWriter
from datatrove.utils.hashing import HashConfig
from llm_launch.dataprep.blocks.dedup import (
    DEDUP_STEP,
    PLAIN_WORDS,
    DropRemoved,
    FullSignatures,
    JoinParagraphs,
    MarkRemoved,
    PassingExactSignatures,
    RankFile,
    RankShare,
    SplitParagraphs,
    VerifyPairs,
)
from llm_launch.dataprep.blocks.filters import FILTER_STEP, WhitespaceWords, filter_steps
from llm_launch.dataprep.blocks.mix import KEPT_STEP, MIX_FILE, CountKept, Scatter, mix_plan
from llm_launch.dataprep.blocks.pack import PackShard, tokenizer_of
from llm_launch.dataprep.blocks.read import EXTRACT_STEP, NORMALIZE_STEP, READ_STEP, Extract, Normalize, SourceReader
from llm_launch.dataprep.blocks.reports import REPORTS, TaskReport, merge_reports
from llm_launch.dataprep.dedup import LSH_WEIGHTS
from llm_launch.dataprep.executors import Hosts, Stage, run_stages
from llm_launch.dataprep.files import relative_name, source_files
from llm_launch.dataprep.process import available_cores
from llm_launch.dataprep.run import _summarise, open_output
from llm_launch.launcher.config.schema import DataPrepConfig
from llm_launch.launcher.data_prep import prep_tasks, work_dir
from llm_launch.launcher.jsonl import Tally

MAX_EXACT_FINDERS = 32
"""Tasks of exact_find (each takes a range of hash values and reads every filter task's signature file)."""


def document_bytes(doc) -> bytes:
    """What exact deduplication hashes: the normalised text, UTF-8 (xxhash 4 hashes bytes only; DataTrove
    picks the hash function's input type from this annotation)."""
    return doc.text.encode("utf-8")


def document_record(writer, doc) -> dict:
    """What our JsonlWriters write of a document (read back by RankFile with DataTrove's default reader adapter):
    text, id and metadata, without DataTrove's default adapter's dataclasses.asdict deep copy of each document."""
    return {"text": doc.text, "id": doc.id, "metadata": doc.metadata}


def list_inputs(cfg: DataPrepConfig) -> tuple[list[tuple[int, str, str]], int, Tally, dict[int, int]]:
    """(source index, path or URL, name within the source) of every input file in reading order, their total
    size, listing problems and the problems per source (local folders, and s3:// prefixes through DataTrove's
    fsspec I/O: files.py)."""
    files, size, tally, bad = [], 0, Tally(), {}
    for index, source in enumerate(cfg.sources):
        try:
            found = source_files(source.path, source.format)
        except OSError as exc:
            tally.add("unreadable_file", source.path, f"{type(exc).__name__}: {exc}")
            bad[index] = 1
            continue
        if not found:
            tally.add("unreadable_file", source.path, f"no {source.format} files")
            bad[index] = 1
        for path, bytes_, _ in found:
            files.append((index, path, relative_name(source.path, path)))
            size += bytes_
    return files, size, tally, bad


def work_folder(cfg: DataPrepConfig, fingerprint: str) -> str:
    """Where this run's intermediates go: <work_dir or output.dir/.work>/<fingerprint>."""
    return f"{work_dir(cfg).rstrip('/')}/{fingerprint}"


def minhash_config(cfg: DataPrepConfig) -> MinhashConfig:
    """Bands x rows for dedup.threshold and num_perm, chosen as the in-memory pipeline's datasketch LSH did;
    shingles of lower-cased whitespace words (DataTrove's default also drops punctuation and digits); 64-bit
    hashes. FullSignatures hashes the words itself (word_hashes.py); hash_fc names SHA-1 only because DataTrove's
    default, xxhash, is refused for str by xxhash 4 when the step is built."""
    from datasketch.lsh import _optimal_param

    bands, rows = _optimal_param(cfg.dedup.threshold, cfg.dedup.num_perm, *LSH_WEIGHTS)
    return MinhashConfig(n_grams=cfg.dedup.shingle_size, num_buckets=bands, hashes_per_bucket=rows, seed=1,
                         norm_config=PLAIN_WORDS, hash_config=HashConfig(precision=64, hash_fc="sha1"))


def build_stages(cfg: DataPrepConfig, work: str, files: list[tuple[int, str]], tasks: int,
                 fingerprint: str, shards: str | None = None) -> list[Stage]:
    """The stages of this configuration (see the module docstring)."""
    paragraphs = cfg.dedup.granularity == "paragraph"
    unit = "paragraphs" if paragraphs else "documents"
    exact = ExactDedupConfig(content_getter=document_bytes)
    finders = min(tasks, MAX_EXACT_FINDERS)
    minhash = minhash_config(cfg)
    words = WhitespaceWords()

    def filter_pipeline() -> list:
        steps = [SourceReader(cfg.sources, files, work), Extract(work), Normalize(work), *filter_steps(cfg.filters, work)]
        if paragraphs:
            steps.append(SplitParagraphs())
        steps.append(JsonlWriter(f"{work}/filtered", output_filename="${rank}.jsonl", compression=None,
                                 adapter=document_record))
        if cfg.dedup.exact:
            steps.append(PassingExactSignatures(f"{work}/exact/sigs", config=exact, finder_workers=finders))
        if cfg.dedup.near:
            steps.append(FullSignatures(f"{work}/minhash/sigs", config=minhash, language=words))
        return steps

    def find_pipeline() -> list:
        """exact_find's hash ranges and the MinHash bands (buckets, then their verification) spread over the tasks."""
        steps = []
        if cfg.dedup.exact:
            steps.append(RankShare(ExactFindDedups(f"{work}/exact/sigs", f"{work}/exact/dups", config=exact), finders))
        if cfg.dedup.near:
            steps += [RankShare(MinhashDedupBuckets(f"{work}/minhash/sigs", f"{work}/minhash/candidates",
                                                    config=minhash), minhash.num_buckets),
                      RankShare(VerifyPairs(f"{work}/minhash/candidates", f"{work}/minhash/sigs",
                                            f"{work}/minhash/verified", minhash, cfg.dedup.threshold),
                                minhash.num_buckets)]
        return steps

    stages = [Stage("filter", tasks, filter_pipeline)]
    if cfg.dedup.exact or cfg.dedup.near:
        # as many tasks as the filter stage (its input's size), at most one per hash range and per band
        band_tasks = min(minhash.num_buckets, tasks) if cfg.dedup.near else 0
        stages.append(Stage("find_duplicates", max(finders if cfg.dedup.exact else 0, band_tasks), find_pipeline))
    if cfg.dedup.near:
        stages.append(Stage("minhash_cluster", 1, lambda: [MinhashDedupCluster(
            f"{work}/minhash/verified", f"{work}/minhash/remove", config=minhash)]))

    def kept_pipeline() -> list:
        steps = [RankFile(f"{work}/filtered")]
        if cfg.dedup.exact:
            steps.append(MarkRemoved(ExactDedupFilter(f"{work}/exact/dups", config=exact), f"exact_duplicate_{unit}"))
        if cfg.dedup.near:
            steps.append(MarkRemoved(MinhashDedupFilter(f"{work}/minhash/remove"), f"near_duplicate_{unit}"))
        steps.append(DropRemoved(work))
        if paragraphs:
            steps.append(JoinParagraphs())
        return [*steps, CountKept(work), JsonlWriter(f"{work}/kept", output_filename="${rank}.jsonl", compression=None,
                                                   adapter=document_record)]

    def decide_mix() -> None:
        kept = [_task_counts(work, KEPT_STEP, rank) for rank in range(tasks)]
        plan = mix_plan(kept, [s.weight for s in cfg.sources], cfg.split.valid_fraction, cfg.output.shard_chars)
        with get_datafolder(work).open(MIX_FILE, "w") as f:
            f.write(json.dumps(plan, indent=1))

    def pack_tasks() -> int:
        tokenizer_of(cfg.tokenizer_path)  # loaded once here: the pack workers (forked) inherit it
        return sum(_mix(work)["buckets"].values())

    def pack_pipeline() -> list:
        return [PackShard(work, shards or cfg.output.dir, _mix(work)["buckets"], tokenizer_path=cfg.tokenizer_path,
                          seq_len=cfg.seq_len, seed=cfg.seed, shuffle=cfg.shuffle, fingerprint=fingerprint,
                          num_sources=len(cfg.sources))]

    return [*stages,
            Stage("dedup_filter", tasks, kept_pipeline),
            Stage("mix", 0, None, driver=decide_mix),
            Stage("scatter", tasks, lambda: [RankFile(f"{work}/kept"), Scatter(work, cfg.seed, cfg.shuffle)]),
            Stage("pack", pack_tasks, pack_pipeline)]


def _task_counts(work: str, step: str, rank: int) -> dict[int, dict[str, int]]:
    folder = get_datafolder(work)
    name = f"{REPORTS}/{step}/{rank:05d}.json"
    if not folder.exists(name):
        return {}
    with folder.open(name, "r") as f:
        return {int(s): c for s, c in json.loads(f.read())["counts"].items()}


def _mix(work: str) -> dict:
    with get_datafolder(work).open(MIX_FILE, "r") as f:
        return json.loads(f.read())


def _plan(cfg: DataPrepConfig, work: str, listing: Tally, listing_bad: dict[int, int]) -> dict:
    """What _summarise needs, merged from every task's reports."""
    bad = Tally()
    bad.merge(listing)
    merged = [merge_reports(work, step) for step in (READ_STEP, EXTRACT_STEP, NORMALIZE_STEP)]
    for report in merged:
        bad.merge(report.tally)
    folder = get_datafolder(work)

    def step_reports(step: str) -> TaskReport:
        total = TaskReport()
        for name in sorted({p.split("/")[2] for p in folder.list_files(f"{REPORTS}/{step}", glob_pattern="*/*.json")}):
            part = merge_reports(work, f"{step}/{name}")
            total.tally.merge(part.tally)
            for source, counts in part.counts.items():
                for key, value in counts.items():
                    total.count(source, key, value)
        return total

    filtered, dedup = step_reports(FILTER_STEP), merge_reports(work, DEDUP_STEP)
    kept, scatter, mix = merge_reports(work, KEPT_STEP), merge_reports(work, "scatter"), _mix(work)
    sources = []
    for i, source in enumerate(cfg.sources):
        read = sum(r.counts.get(i, {}).get("documents_read", 0) for r in merged)
        bad_count = listing_bad.get(i, 0) + sum(r.counts.get(i, {}).get("bad_input", 0) for r in merged)
        dropped = filtered.counts.get(i, {}).get("filtered", 0)
        kept_docs = kept.counts.get(i, {}).get("kept", 0)
        read_ok = read - sum(r.counts.get(i, {}).get("bad_input", 0) for r in merged[1:])
        selected = scatter.counts.get(i, {})
        sources.append({"name": source.name, "path": source.path, "format": source.format, "weight": source.weight,
                        "documents_read": read, "bad_input": bad_count, "filtered": dropped,
                        "duplicates": read_ok - dropped - kept_docs, "kept": kept_docs,
                        "documents_available": mix["documents_available"][i],
                        "chars_available": mix["chars_available"][i],
                        "documents_selected": selected.get("documents_selected", 0),
                        "chars_selected": selected.get("chars_selected", 0)})
    total = sum(s["chars_selected"] for s in sources)
    for s in sources:
        s["share_selected"] = round(s["chars_selected"] / total, 6) if total else 0.0
    dedup_tally = dedup.tally
    if cfg.dedup.granularity == "paragraph":
        emptied = sum(s["duplicates"] for s in sources)
        if emptied:
            dedup_tally.counts["documents_emptied_by_paragraph_dedup"] = emptied
    return {"splits": {name: {"units": count} for name, count in mix["buckets"].items()}, "sources": sources,
            "bad_input": bad.to_dict(), "filtered": filtered.tally.to_dict(), "dedup": dedup_tally.to_dict()}


def gather_shards(shards: str, out: Path) -> None:
    """Host 0 copies the shards every host wrote under <work>/shards to output.dir (hosts without a shared
    file system: SageMaker instances share only S3)."""
    folder = get_datafolder(shards)
    for name in folder.list_files():
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        folder.get_file(name, str(target))


def prepare_data(cfg: DataPrepConfig, hosts: Hosts | None = None, progress: bool = True,
                 shared_output: bool = True) -> dict:
    """Run the DataTrove pipeline for a resolved config (seq_len, tokenizer_path, seed and output.dir set).

    shared_output=False (several hosts that share no file system): pack tasks write their shards under the
    intermediates folder (which must then be on S3) and host 0 gathers them into output.dir.
    Returns the manifest on host 0 and an empty dict on the others.
    """
    hosts = hosts or Hosts()
    out, fingerprint, done = open_output(cfg, progress)
    if done is not None:
        return done if hosts.index == 0 else {}
    work = work_folder(cfg, fingerprint)
    files, size, listing, listing_bad = list_inputs(cfg)
    tasks = prep_tasks(cfg, len(files), size)
    workers = cfg.workers or available_cores()
    host = f" (host {hosts.index + 1}/{hosts.count})" if hosts.count > 1 else ""
    say = (lambda line: print(f"data prep{host}: {line}", flush=True)) if progress else (lambda _: None)
    say(f"{len(files)} file(s), {size / 1e6:,.1f} MB, {tasks} task(s) per stage, {workers} worker(s) on each of "
        f"{hosts.count} host(s); intermediates in {work}, each task's log in {work}/logs/<stage>/logs")
    shards = None if shared_output or hosts.count == 1 else f"{work}/shards"
    run_stages(build_stages(cfg, work, files, tasks, fingerprint, shards), hosts, workers, f"{work}/logs", say)
    if hosts.index != 0 or not hosts.works:
        hosts.barrier()
        return {}
    if shards is not None:
        gather_shards(shards, out)
    _, eos_id, vocab = tokenizer_of(cfg.tokenizer_path)
    plan = _plan(cfg, work, listing, listing_bad)
    manifest = _summarise(cfg, plan, out, fingerprint, eos_id, vocab)
    if not cfg.output.keep_work:
        folder = get_datafolder(work)
        if folder.exists(""):
            folder.rm("", recursive=True)
    hosts.barrier()
    return manifest
