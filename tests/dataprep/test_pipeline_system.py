"""The DataTrove pipeline where it is slow or needs the machine: killed and rerun, two SageMaker hosts, real Slurm."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from datatrove_helpers import kept_ids, shard_hashes
from llm_launch.dataprep import pipeline, run
from llm_launch.dataprep.filters import QualityFilters
from llm_launch.dataprep.manifest import run_fingerprint
from llm_launch.dataprep.normalize import normalize_text
from llm_launch.launcher.config.schema import DataSourceConfig
from llm_launch.train.data.prepare import load_fast_tokenizer
from moto_endpoint import REGION
from pipeline_helpers import SAMPLE, prep_config

pytestmark = pytest.mark.system
HERE = Path(__file__).parent
SETTINGS = {"workers": 1, "task_bytes": 300_000, "split__valid_fraction": 0.05, "output__shard_chars": 300_000,
            "filters__max_duplicate_ngram_fraction": 0.5}


def split_sample(folder: Path, parts: int = 4) -> DataSourceConfig:
    """The shipped corpus (298 chapters, 1.3 MB) in `parts` files of consecutive chapters."""
    lines = (SAMPLE / "corpus" / "train.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    folder.mkdir(parents=True, exist_ok=True)
    per = -(-len(lines) // parts)
    for k in range(parts):
        (folder / f"part_{k}.jsonl").write_text("".join(lines[k * per:(k + 1) * per]), encoding="utf-8")
    return DataSourceConfig(name="kjv", path=str(folder), id_field="id")


def test_the_shipped_sample_differs_from_the_in_memory_pipeline_only_where_filters_differ(tmp_path):
    """Recipe settings (repeated 3-grams <= 50%) on the whole sample. DataTrove's GopherRepetitionFilter measures
    repeated n-grams as the characters of non-overlapping repeats over the document's length, ours as the share
    of the characters of all n-gram occurrences; ours drops the 5 chapters listed in the old manifest, Gopher's
    measure keeps them. Everything else (reading, other filters, dedup) keeps the same documents."""
    source = DataSourceConfig(name="kjv", path=str(SAMPLE / "corpus" / "train.jsonl"), id_field="id")
    settings = {**SETTINGS, "workers": 2, "output__keep_work": True, "filters__max_duplicate_line_fraction": 0.3}
    old = run.prepare_data(prep_config(tmp_path / "old", source, **settings), progress=False)
    cfg = prep_config(tmp_path / "new", source, **settings)
    new = pipeline.prepare_data(cfg, progress=False)
    chapters = [json.loads(line) for line in (SAMPLE / "corpus" / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    ours = QualityFilters(cfg.filters)
    by_ngrams = [c for c in chapters if ours.reason(normalize_text(c["text"]), {}) == "duplicate_ngrams"]
    assert old["filters"]["dropped"]["duplicate_ngrams"]["count"] == len(by_ngrams) == 5
    assert "duplicate_ngrams" not in new["filters"]["dropped"]
    assert new["filters"]["dropped"]["duplicate_lines"] == old["filters"]["dropped"]["duplicate_lines"]
    assert new["sources"][0]["kept"] == old["sources"][0]["kept"] + 5 == 297
    assert set(kept_ids(cfg)) == {f"{source.path}:{i + 1} (id={c['id']})" for i, c in enumerate(chapters)} - {
        e["where"] for e in new["filters"]["dropped"]["duplicate_lines"]["examples"]}
    tokenizer, _ = load_fast_tokenizer(SAMPLE / "tokenizer")
    extra = sum(len(tokenizer.encode(normalize_text(c["text"]), add_special_tokens=False).ids) + 1 for c in by_ngrams)
    tokens = {name: sum(s["tokens_in"] for s in m["splits"].values()) for name, m in (("old", old), ("new", new))}
    assert tokens["new"] - tokens["old"] == extra


RUNNER = """
import json, sys
sys.path.insert(0, {here!r})
from pipeline_helpers import prep_config
from llm_launch.dataprep.pipeline import prepare_data
from llm_launch.launcher.config.schema import DataSourceConfig
from llm_launch.train.data.prepare import load_fast_tokenizer
args = json.loads(sys.argv[1])
prepare_data(prep_config(args["out"], DataSourceConfig(**args["source"]), **args["settings"]), progress=False)
"""


def test_killed_mid_stage_the_rerun_skips_finished_tasks_and_equals_an_uninterrupted_run(tmp_path):
    source = split_sample(tmp_path / "in")
    reference = pipeline.prepare_data(prep_config(tmp_path / "reference", source, **SETTINGS), progress=False)
    cfg = prep_config(tmp_path / "killed", source, **SETTINGS, output__keep_work=True)
    logs = Path(pipeline.work_folder(cfg, run_fingerprint(cfg))) / "logs"
    args = {"out": str(tmp_path / "killed"), "settings": {**SETTINGS, "output__keep_work": True},
            "source": {"name": source.name, "path": source.path, "id_field": source.id_field}}
    job = subprocess.Popen([sys.executable, "-c", RUNNER.format(here=str(HERE)), json.dumps(args)],
                           start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stage = logs / "dedup_filter"  # the stages before it finished, task 2 of 4 running when killed
    deadline = time.monotonic() + 300
    while not (stage / "completions" / "00001").exists():
        assert job.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.01)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait(timeout=60)
    finished = sorted(p.name for p in (stage / "completions").iterdir())
    assert "00000" in finished and len(finished) < 4
    before = {p: p.stat().st_mtime_ns for p in [*(stage / "completions").iterdir(), *(logs / "filter").rglob("*.log")]}

    manifest = pipeline.prepare_data(cfg, progress=False)
    assert {p: p.stat().st_mtime_ns for p in before} == before  # finished tasks were not run again
    assert sorted(p.name for p in (stage / "completions").iterdir()) == ["00000", "00001", "00002", "00003"]
    assert manifest == reference
    assert shard_hashes(tmp_path / "killed") == shard_hashes(tmp_path / "reference")


def test_two_sagemaker_hosts_split_every_stage_and_host_0_gathers_the_shards(tmp_path):
    """Two SageMaker hosts (tests/launcher/container/two_hosts.py: own /opt/ml each, a real 2-node torchrun)
    share only the intermediates folder (a folder both mount, standing in for the s3:// prefix SageMaker needs:
    s3fs cannot be installed beside boto3 1.44 yet); each runs half of every stage's tasks, host 0 gathers the
    shards into its own output folder. Same kept documents and tokens as one host running all four tasks."""
    sys.path.insert(0, str(HERE.parent / "launcher" / "container"))
    from composed_job import compose_job
    from llm_launch.launcher.clusters.sagemaker.paths import container_job
    from llm_launch.train.data.packed import PackedDataset
    from two_hosts import CHANNELS, TwoHosts, namespaces_unavailable

    if namespaces_unavailable():
        pytest.skip(namespaces_unavailable())
    source = split_sample(tmp_path / "in")
    reference = pipeline.prepare_data(prep_config(tmp_path / "one-host", source, **SETTINGS), progress=False)
    out, work = "/opt/ml/output/data/prepared", "/opt/ml/checkpoints/prep-work"
    job = container_job(compose_job(["recipe=prepare_sample", "cluster=sagemaker", "trainer.num_nodes=2",
                                     "instance.accelerators_per_node=1", "data_prep.workers=1",
                                     f"data_prep.task_bytes={SETTINGS['task_bytes']}", "data_prep.seq_len=64",
                                     "data_prep.seed=7", "data_prep.split.valid_fraction=0.05",
                                     "data_prep.output.shard_chars=300000"], tmp_path / "out"))
    job.data_prep.sources[0].path = CHANNELS["train"]
    job.data_prep.tokenizer_path = CHANNELS["tokenizer"]
    job.data_prep.output.dir, job.data_prep.output.work_dir = out, work
    hosts = TwoHosts(tmp_path / "hosts", shared=True)
    files = {f"{CHANNELS['train']}/{p.name}": p for p in sorted(Path(source.path).glob("*.jsonl"))}
    codes = hosts.run(job, {**files, CHANNELS["tokenizer"]: SAMPLE / "tokenizer"})
    assert codes == {"algo-1": 0, "algo-2": 0}, hosts.logs()
    assert "(host 1/2): stage filter: tasks 0..1 of 4" in hosts.log("algo-1")
    assert "(host 2/2): stage filter: tasks 2..3 of 4" in hosts.log("algo-2")
    manifest = json.loads((hosts.path("algo-1", out) / "manifest.json").read_text())
    assert not hosts.path("algo-2", out).exists()  # only host 0 holds the dataset
    for key in ("documents_read", "filtered", "duplicates", "kept"):
        assert manifest["sources"][0][key] == reference["sources"][0][key]
    assert sum(s["tokens_in"] for s in manifest["splits"].values()) == sum(
        s["tokens_in"] for s in reference["splits"].values())
    train = PackedDataset.open(hosts.path("algo-1", out) / "train")
    assert len(train) == manifest["splits"]["train"]["rows"] > 0


def test_a_prepare_job_on_real_slurm_runs_the_stages_and_a_resubmission_has_nothing_to_do(slurm_cluster, tmp_path):
    """`llm-launch ... cluster=slurm action=submit` to a real single-node Slurm (tests/slurm_cluster.py): one
    sbatch job whose node runs every stage's tasks on 2 workers; the resubmitted job finds the dataset done."""
    import re
    import socket

    from llm_launch.train.data.packed import PackedDataset

    cluster = slurm_cluster(max_time=30)
    source = split_sample(tmp_path / "in")
    out = tmp_path / "job"
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    args = [str(Path(sys.executable).parent / "llm-launch"), "recipe=prepare_sample", "cluster=slurm", "instance=cpu",
            "cluster.slurm.time_limit=00:20:00", f"cluster.slurm.shared_dir={tmp_path}", f"output_dir={out}",
            f"cluster.slurm.rendezvous_port={port.getsockname()[1]}", "data_prep.workers=2",
            f"data_prep.task_bytes={SETTINGS['task_bytes']}",
            f"data_prep.sources=[{{name: kjv, path: '{source.path}', id_field: id}}]"]
    port.close()

    def submit() -> str:
        done = subprocess.run([*args, "action=submit"], capture_output=True, text=True, env=cluster.env, cwd=tmp_path,
                              timeout=300)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        return re.search(r"submitted Slurm job (\d+)", done.stdout).group(1)

    def finished(job_id: str) -> str:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            state = cluster.tool("squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T").stdout.strip()
            if state in ("", "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
                break
            time.sleep(1)
        log = out / f"slurm-{job_id}.out"
        return log.read_text(errors="replace") if log.exists() else ""

    log = finished(submit())
    summary = json.loads((out / "COMPLETE").read_text())
    assert summary["task"] == "prepare" and summary["hosts"] == 1, log[-3000:]
    assert "stage filter: tasks 0..3 of 4 on this host" in log and "stage pack:" in log
    manifest = json.loads((out / "data" / "manifest.json").read_text())
    assert manifest["sources"][0]["documents_read"] == 298
    assert len(PackedDataset.open(out / "data" / "train")) == manifest["splits"]["train"]["rows"] > 0
    (out / "COMPLETE").unlink()
    again = finished(submit())
    assert "already holds this run's data; nothing to do" in again, again[-3000:]


def test_intermediates_on_s3_give_the_same_dataset_as_a_local_folder(aws, tmp_path):
    """data_prep.output.work_dir=s3://... against moto_server (tests/moto_endpoint.py): every stage reads and writes
    its intermediates there through fsspec (s3fs), and the dataset equals the one built with a local folder."""
    pytest.importorskip("s3fs", reason="s3fs is not installed (pip install s3fs; see docs/data.md)")
    import boto3

    boto3.client("s3").create_bucket(Bucket="prep", CreateBucketConfiguration={"LocationConstraint": REGION})
    source = split_sample(tmp_path / "in", parts=2)
    local = pipeline.prepare_data(prep_config(tmp_path / "local", source, **SETTINGS), progress=False)
    cfg = prep_config(tmp_path / "s3", source, **SETTINGS, output__work_dir="s3://prep/work", output__keep_work=True)
    assert pipeline.prepare_data(cfg, progress=False) == local
    assert shard_hashes(tmp_path / "s3") == shard_hashes(tmp_path / "local")
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket="prep", Prefix="work/")["Contents"]]
    fingerprint = run_fingerprint(cfg)
    assert f"work/{fingerprint}/logs/pack/completions/00000" in keys
    assert any(k.startswith(f"work/{fingerprint}/filtered/") for k in keys)


def test_sources_on_s3_give_the_same_dataset_as_local_files(aws, tmp_path):
    """A JSONL source (an s3:// prefix) and a Parquet source (one s3:// object) read through DataTrove's fsspec I/O
    (s3fs) against moto_server, with the intermediates on S3 too: the same documents read, filtered, deduplicated
    and kept, with the same characters, as the same files read from a local folder, and the same shards: the mix and
    split are seeded by a document's place within its source, not by where the source lies."""
    pytest.importorskip("s3fs", reason="s3fs is not installed (pip install s3fs; see docs/data.md)")
    import boto3
    import pyarrow as pa
    import pyarrow.parquet as pq

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="corpus", CreateBucketConfiguration={"LocationConstraint": REGION})
    jsonl = split_sample(tmp_path / "in", parts=2)
    records = [json.loads(line) for line in (SAMPLE / "corpus" / "valid.jsonl").read_text(encoding="utf-8").splitlines()]
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "extra.parquet", row_group_size=8)
    for path in sorted(Path(jsonl.path).iterdir()):
        s3.upload_file(str(path), "corpus", f"web/{path.name}")
    s3.upload_file(str(tmp_path / "extra.parquet"), "corpus", "extra/extra.parquet")
    parquet = DataSourceConfig(name="extra", path=str(tmp_path / "extra.parquet"), format="parquet", id_field="id")
    local = pipeline.prepare_data(prep_config(tmp_path / "local", jsonl, parquet, **SETTINGS), progress=False)
    remote_sources = (DataSourceConfig(name="kjv", path="s3://corpus/web", id_field="id"),
                      DataSourceConfig(name="extra", path="s3://corpus/extra/extra.parquet", format="parquet",
                                       id_field="id"))
    s3.create_bucket(Bucket="prep", CreateBucketConfiguration={"LocationConstraint": REGION})
    cfg = prep_config(tmp_path / "s3", *remote_sources, **SETTINGS, output__work_dir="s3://prep/work")
    remote = pipeline.prepare_data(cfg, progress=False)
    keys = ("documents_read", "bad_input", "filtered", "duplicates", "kept", "documents_available", "chars_available")
    assert [{k: s[k] for k in keys} for s in remote["sources"]] == [{k: s[k] for k in keys} for s in local["sources"]]
    assert remote["sources"][0]["documents_read"] == 298 and remote["sources"][1]["documents_read"] == len(records)
    assert remote["splits"]["train"]["rows"] > 0 and len(shard_hashes(tmp_path / "s3")) > 1
    assert remote["splits"]["valid"]["rows"] > 0
    assert shard_hashes(tmp_path / "s3") == shard_hashes(tmp_path / "local")
    assert remote["filters"]["dropped"].keys() == local["filters"]["dropped"].keys()
    assert [s["path"] for s in remote["sources"]] == ["s3://corpus/web", "s3://corpus/extra/extra.parquet"]


def _forked_workers(root: int) -> list[int]:
    """Pool workers under process `root`: prepare processes forked from a prepare process (same command line)."""
    parents, commands = {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            commands[int(entry.name)] = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue

    def under(pid: int) -> bool:
        while pid > 1:
            if pid == root:
                return True
            pid = parents.get(pid, 0)
        return False

    return [pid for pid, command in commands.items() if b"llm_launch.dataprep.prepare" in command
            and commands.get(parents.get(pid)) == command and under(pid)]


def test_a_killed_pool_worker_fails_the_job_with_one_line_and_the_rerun_finishes_it(tmp_path):
    """llm-launch recipe=prepare_sample on the sample split in 4 files, 2 workers: SIGKILL to one pool worker (as
    the OOM killer sends) ends the job promptly with one line naming the stage, instead of hanging it as
    DataTrove's LocalPipelineExecutor.run did; the same command again finishes the dataset."""
    source = split_sample(tmp_path / "in")
    command = [sys.executable, "-m", "llm_launch.launcher.cli", "recipe=prepare_sample", f"output_dir={tmp_path / 'out'}",
               f"data_prep.sources.0.path={source.path}", "data_prep.task_bytes=1", "data_prep.workers=2"]
    job = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline, killed = time.monotonic() + 300, None
    while killed is None:
        assert job.poll() is None and time.monotonic() < deadline, "the job ended before a worker could be killed"
        workers = _forked_workers(job.pid)
        if workers:
            killed = workers[0]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.005)
    try:
        output, _ = job.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(job.pid, signal.SIGKILL)
        raise AssertionError("the job hung after one of its workers was killed") from None
    assert job.returncode != 0, output[-3000:]
    lines = [line for line in output.splitlines() if "a worker process died" in line]
    assert lines and lines[0].startswith("llm_launch.dataprep.prepare: stage "), output[-3000:]
    assert "run the job again to redo only the others" in lines[0]

    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    manifest = json.loads((tmp_path / "out" / "data" / "manifest.json").read_text())
    assert manifest["sources"][0]["documents_read"] == 298
