"""The DataTrove pipeline (dataprep/pipeline.py) against the in-memory pipeline (dataprep/run.py), same run.

On a synthetic corpus (dataprep/synthetic.py: random-word documents with planted near-duplicates) written as
JSONL files of --file-mb each (task_bytes = one file, so a task's input stays the same when the corpus grows):
1. documents/s per worker of both pipelines on the same corpus and workers (whole job: read to packed shards),
   by wall time and by CPU time (user + system of the job and all its processes: less sensitive to other load
   on a shared machine); --repeats runs of each, alternating old and new, medians;
2. peak RSS: the largest worker process and the main process, at --mb and 2 x --mb, for both pipelines;
3. the same corpus on 1 host with --workers workers and on 2 simulated hosts (two processes, each running its
   share of every stage with --workers / 2 workers, meeting at file barriers), same manifest;
4. dedup quality, old and new side by side: recall of the planted pairs at Jaccard >= 0.8 and precision against
   the planted non-duplicates at <= 0.5, with dedup.threshold 0.7 between them.
Each measurement runs in a fresh process: its peak RSS (VmHWM) and its pool workers' (getrusage of its children;
a forked worker's RSS counts the pages it shares with the main process).
The load average of the machine is printed before and after.
Usage: python bench/data_prep_pipeline.py [--mb 16] [--file-mb 4] [--workers 2] [--repeats 1] [--sizes 1,2]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from llm_launch.launcher import PROJECT_ROOT

TOKENIZER = PROJECT_ROOT / "data" / "sample" / "tokenizer"
DOC_BYTES = 1900
"""About the size of one synthetic document in JSONL (150 to 400 words of 2 to 8 letters)."""


def config(corpus: Path, out: Path, workers: int, file_bytes: int, **extra):
    from llm_launch.launcher.config.schema import DataPrepConfig, DataSourceConfig

    cfg = DataPrepConfig(sources=[DataSourceConfig(name="synthetic", path=str(corpus), id_field="id")], seq_len=2048,
                         tokenizer_path=str(TOKENIZER), seed=0, workers=workers, task_bytes=file_bytes)
    cfg.filters.min_alpha_word_fraction = 0.0
    cfg.dedup.threshold = 0.7
    cfg.split.valid_fraction = 0.01
    cfg.output.dir = str(out)
    cfg.output.shard_chars = file_bytes  # a pack task holds one shard's text: bounded like the other tasks
    for key, value in extra.items():
        setattr(cfg.output, key, value)
    return cfg


class FileBarrier:
    """Hosts meet when each has written its mark for the n-th barrier (a shared folder, like the job's)."""

    def __init__(self, folder: Path, index: int, count: int):
        self.folder, self.index, self.count, self.calls = folder, index, count, 0

    def __call__(self) -> None:
        self.calls += 1
        mark = self.folder / f"{self.calls:04d}"
        mark.mkdir(parents=True, exist_ok=True)
        (mark / str(self.index)).touch()
        while len(list(mark.iterdir())) < self.count:
            time.sleep(0.05)


MEMORY_FLOOR_KIB = 1 << 20
"""A run is stopped when the machine has less than this available (MemAvailable)."""


def available_kib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1])
    return MEMORY_FLOOR_KIB * 4


def peak_rss_kib() -> int:
    """This process's own peak RSS (VmHWM). Not getrusage's ru_maxrss: Linux carries that across exec from the
    process that started this one (the bench, which holds the corpus in memory)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child(spec: dict) -> None:
    """One measured run; prints its seconds and peak RSS (KiB) as JSON."""
    cfg = config(Path(spec["corpus"]), Path(spec["out"]), spec["workers"], spec["file_bytes"], keep_work=True)
    start = time.perf_counter()
    if spec["pipeline"] == "old":
        from llm_launch.dataprep.run import prepare_data

        manifest = prepare_data(cfg, progress=False)
    else:
        from llm_launch.dataprep.executors import Hosts
        from llm_launch.dataprep.pipeline import prepare_data

        hosts = Hosts(spec["host"], spec["hosts"], barrier=FileBarrier(Path(spec["barrier"]), spec["host"],
                                                                         spec["hosts"]))
        manifest = prepare_data(cfg, hosts, progress=False)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "rss_main_kib": peak_rss_kib(),
                      "rss_worker_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
                      "manifest": manifest}))


def measure(pipeline: str, corpus: Path, out: Path, workers: int, file_bytes: int, hosts: int = 1) -> dict:
    barrier = Path(tempfile.mkdtemp(prefix="barrier-"))
    if out.exists():
        shutil.rmtree(out)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    env = {**os.environ, "RAYON_NUM_THREADS": "1", "LOGURU_LEVEL": "WARNING"}
    outputs = [tempfile.TemporaryFile("w+") for _ in range(hosts)]
    procs = [subprocess.Popen([sys.executable, __file__, "--child", json.dumps(
        {"pipeline": pipeline, "corpus": str(corpus), "out": str(out), "workers": workers, "file_bytes": file_bytes,
         "host": h, "hosts": hosts, "barrier": str(barrier)})], stdout=outputs[h], stderr=subprocess.DEVNULL,
        text=True, env=env, start_new_session=True) for h in range(hosts)]
    started, low = time.perf_counter(), None
    while any(proc.poll() is None for proc in procs):
        if available_kib() < MEMORY_FLOOR_KIB:  # stop the run before the kernel's OOM killer picks a process
            low = low or time.perf_counter() - started
            for proc in procs:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # the run and its pool workers
        time.sleep(0.5)
    shutil.rmtree(barrier, ignore_errors=True)
    if low is not None:
        return {"stopped": f"stopped after {low:.0f} s: the machine had under {MEMORY_FLOOR_KIB >> 20} GiB available"}
    results = []
    for proc, output in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, f"{pipeline} run failed"
        output.seek(0)
        results.append(json.loads(output.read().strip().splitlines()[-1]))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"seconds": max(r["seconds"] for r in results), "cpu_seconds": cpu,
            "rss_main_kib": max(r["rss_main_kib"] for r in results),
            "rss_worker_kib": max(r["rss_worker_kib"] for r in results), "manifest": results[0]["manifest"]}


def dedup_quality(corpus_obj, corpus: Path, out: Path, workers: int, file_bytes: int) -> dict:
    from llm_launch.dataprep.dedup import Deduplicator, MinHasher, Unit, digest
    from llm_launch.dataprep.manifest import run_fingerprint
    from llm_launch.dataprep.normalize import normalize_text
    from llm_launch.dataprep.pipeline import work_folder
    from llm_launch.dataprep.synthetic import quality

    cfg = config(corpus, out, workers, file_bytes, keep_work=True)
    kept = set()
    for path in sorted((Path(work_folder(cfg, run_fingerprint(cfg))) / "kept").glob("*.jsonl")):
        kept |= {int(json.loads(line)["id"].rsplit("id=", 1)[1].rstrip(")")) for line in path.open()}
    dedup, hasher = Deduplicator(cfg.dedup), MinHasher(cfg.dedup.num_perm, cfg.dedup.shingle_size)
    read, removed = set(), set()
    records = (json.loads(line) for path in sorted(corpus.glob("*.jsonl")) for line in path.open())
    for record in records:  # read back from the files: the bench keeps no corpus in memory (large runs)
        index, text = record["id"], normalize_text(record["text"])
        read.add(index)
        if dedup.keep([Unit(text, digest(text), hasher.signature(text))], str(index)) is None:
            removed.add(index)
    return {"old": quality(corpus_obj, removed), "new": quality(corpus_obj, read - kept)}


def make(documents: int, seed: int, folder: Path, files: int) -> None:
    """Write a synthetic corpus as JSONL files and its planted pairs as pairs.json (run in its own process, so
    the bench process never holds the corpus)."""
    from llm_launch.dataprep.synthetic import make_corpus, write_corpus

    corpus = make_corpus(documents, seed=seed)
    write_corpus(corpus, folder / "jsonl", files=files)
    (folder / "pairs.json").write_text(json.dumps({"documents": len(corpus.texts), "duplicates": corpus.duplicates,
                                                   "distinct": corpus.distinct}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=float, default=16, help="corpus size (MB) of the first run; the second doubles it")
    parser.add_argument("--file-mb", type=float, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--sizes", default="1,2", help="corpus sizes as multiples of --mb")
    parser.add_argument("--child")
    parser.add_argument("--make", nargs=3, metavar=("DOCUMENTS", "SEED", "FOLDER"))
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    if args.make:
        make(int(args.make[0]), int(args.make[1]), Path(args.make[2]), max(1, round(args.mb / args.file_mb)))
        return
    from llm_launch.dataprep.synthetic import Corpus

    root = Path(tempfile.mkdtemp(prefix="prep-bench-"))
    file_bytes = int(args.file_mb * 1e6)
    rows, first = [], None
    load_before = os.getloadavg()
    scales = [float(x) for x in args.sizes.split(",")]
    print(f"{args.workers} workers; files of {args.file_mb} MB (task_bytes = one file); {os.cpu_count()} cores; "
          f"Python {platform.python_version()}; {args.repeats} run(s) each, medians; load average before "
          f"{load_before[0]:.1f} (1 min)")
    print("| corpus | pipeline | s | documents/s | per worker | vs old | CPU s | documents per CPU s | vs old "
          "| peak RSS main | peak RSS worker |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|", flush=True)
    base = {}
    for scale in scales:
        documents = int(args.mb * scale * 1e6 / DOC_BYTES / 1.2)  # planted copies add about a fifth
        made = root / f"corpus{scale}"
        subprocess.run([sys.executable, __file__, "--make", str(documents), str(int(scale)), str(made),
                        "--mb", str(args.mb * scale), "--file-mb", str(args.file_mb)], check=True)
        pairs = json.loads((made / "pairs.json").read_text())
        corpus_obj = Corpus(duplicates=[tuple(p) for p in pairs["duplicates"]],
                            distinct=[tuple(p) for p in pairs["distinct"]])
        folder, documents = made / "jsonl", pairs["documents"]
        size = sum(p.stat().st_size for p in folder.iterdir())
        first = first or (corpus_obj, folder)
        runs = {"old": [], "new": []}
        for repeat in range(args.repeats):
            for pipeline in (("old", "new") if repeat % 2 == 0 else ("new", "old")):
                runs[pipeline].append(measure(pipeline, folder, root / f"{pipeline}{scale}", args.workers, file_bytes))
        for pipeline, results in runs.items():
            stopped = [r["stopped"] for r in results if "stopped" in r]
            if stopped:
                print(f"| {size / 1e6:.1f} MB, {documents:,} docs | {pipeline} | {stopped[0]} |", flush=True)
                continue
            result = {key: statistics.median(r[key] for r in results)
                      for key in ("seconds", "cpu_seconds", "rss_main_kib", "rss_worker_kib")}
            result["manifest"] = results[-1]["manifest"]
            docs = result["manifest"]["sources"][0]["documents_read"]
            rows.append((scale, size, documents, pipeline, result, docs))
            rate, cpu_rate = docs / result["seconds"], docs / result["cpu_seconds"]
            if pipeline == "old":
                base[scale] = (rate, cpu_rate)
            old = base.get(scale)
            vs_old = [f"{value / old[k]:.2f}" if old else "-" for k, value in enumerate((rate, cpu_rate))]
            print(f"| {size / 1e6:.1f} MB, {documents:,} docs | {pipeline} | {result['seconds']:.1f} | {rate:,.0f} | "
                  f"{rate / args.workers:,.0f} | {vs_old[0]} | {result['cpu_seconds']:.1f} | "
                  f"{cpu_rate:,.0f} | {vs_old[1]} | {result['rss_main_kib'] / 1024:,.0f} MiB | "
                  f"{result['rss_worker_kib'] / 1024:,.0f} MiB |", flush=True)
        shutil.rmtree(root / f"old{scale}", ignore_errors=True)
        if scale != scales[0]:
            shutil.rmtree(root / f"new{scale}", ignore_errors=True)
            shutil.rmtree(made, ignore_errors=True)
    corpus_obj, folder = first
    one = [r for r in rows if r[0] == scales[0] and r[3] == "new"][0][4]
    two = measure("new", folder, root / "hosts2", max(1, args.workers // 2), file_bytes, hosts=2)
    same = {k: v for k, v in two["manifest"].items()} == {k: v for k, v in one["manifest"].items()}
    print("| hosts | workers each | s | same manifest as 1 host |")
    print("|---:|---:|---:|---|")
    print(f"| 1 | {args.workers} | {one['seconds']:.1f} | - |")
    print(f"| 2 | {max(1, args.workers // 2)} | {two['seconds']:.1f} | {same} |")
    quality = dedup_quality(corpus_obj, folder, root / f"new{scales[0]}", args.workers, file_bytes)
    print("| dedup | planted pairs (J >= 0.8) | non-duplicates (J <= 0.5) | removed | recall | precision |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, q in quality.items():
        print(f"| {name} | {q['pairs']} | {q['non_duplicate_pairs']} | {q['removed']} | {q['recall']:.3f} | "
              f"{q['precision']:.3f} |")
    print(f"load average after: {os.getloadavg()[0]:.1f} (1 min)")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
