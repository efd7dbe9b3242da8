"""A data-preparation job before it runs: its settings with the defaults filled in, and its plan.

data_prep.seq_len, tokenizer_path and seed default to the training section's values, so a prepare
job and the training job that reads its output agree on them; output.dir defaults to
<output_dir>/data. Used by llm_launch.launcher.validate (to check and plan what will run) and by the
dataprep entrypoint (to run it).
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from llm_launch.launcher.config.schema import DataFilterConfig, DataPrepConfig, DedupConfig, JobConfig
from llm_launch.launcher.tasks import TASKS
from llm_launch.launcher.topology import catalog_ranks_per_node

DEFAULT_OUTPUT_SUBDIR = "data"
CHARS_PER_TOKEN = 4
"""Rough characters per token of English text with a Llama-style BPE tokenizer, for the plan's estimate."""


def resolve_data_prep(job: JobConfig) -> DataPrepConfig:
    """A copy of job.data_prep with seq_len, tokenizer_path, seed and output.dir set."""
    cfg = copy.deepcopy(job.data_prep)
    cfg.seq_len = cfg.seq_len if cfg.seq_len is not None else job.training.seq_len
    cfg.tokenizer_path = cfg.tokenizer_path or job.training.data.tokenizer_path
    cfg.seed = cfg.seed if cfg.seed is not None else job.training.seed
    cfg.output.dir = cfg.output.dir or str(Path(job.output_dir) / DEFAULT_OUTPUT_SUBDIR)
    return cfg


WORK_SUBDIR = ".work"


def work_dir(cfg: DataPrepConfig) -> str:
    """Where the intermediates go: output.work_dir, or <output.dir>/.work."""
    return cfg.output.work_dir or str(Path(cfg.output.dir or ".") / WORK_SUBDIR)


def prep_stages(cfg: DataPrepConfig) -> list[str]:
    """The DataTrove stages a prepare job runs, in order (dataprep/pipeline.py builds them)."""
    stages = ["filter"]
    if cfg.dedup.exact or cfg.dedup.near:
        stages.append("find_duplicates")
    if cfg.dedup.near:
        stages.append("minhash_cluster")
    return [*stages, "dedup_filter", "mix", "scatter", "pack"]


def prep_tasks(cfg: DataPrepConfig, files: int, size: int) -> int:
    """Tasks of the per-file stages: about task_bytes of input each, at least one, at most one per file."""
    return max(1, min(files, math.ceil(size / cfg.task_bytes)))


def _under(path: str, root: str | None) -> bool:
    if not root or root.startswith("s3://"):
        return False
    root = root.rstrip("/") or "/"
    return path == root or path.startswith(f"{root}/") or root == "/"


def reach_problems(job: JobConfig, shared: str | None) -> list[tuple[str, str]]:
    """(key, message) for each data_prep path that some worker of the job cannot reach: intermediates must be on
    storage every node shares (a shared file system, or S3), and so must the output and the sources of a
    multi-node Slurm or EKS job. `shared` is the cluster's shared storage (Slurm shared_dir, EKS mount)."""
    cfg = resolve_data_prep(job)
    work = work_dir(cfg)
    problems = []
    if "://" in work and not work.startswith("s3://"):
        problems.append(("data_prep.output.work_dir", f"{work}: only a file system folder or an s3:// prefix"))
        return problems
    if job.trainer.num_nodes == 1 or work.startswith("s3://") and job.cluster.kind == "sagemaker":
        return problems
    kind = job.cluster.kind
    if kind == "sagemaker":
        return [("data_prep.output.work_dir", f"{work} is on each SageMaker instance's own disk, and the "
                 f"{job.trainer.num_nodes} instances share no file system; set data_prep.output.work_dir=s3://<bucket>/"
                 "<prefix> (shards are gathered on the first instance)")]
    where = f"{shared} (cluster.{kind}.{'shared_dir' if kind == 'slurm' else 'mount_path'})" if shared else None
    checks = [("data_prep.output.work_dir", work), ("data_prep.output.dir", cfg.output.dir),
              *((f"data_prep.sources[{i}].path", s.path) for i, s in enumerate(cfg.sources))]
    for key, path in checks:
        if path.startswith("s3://") and not key.endswith("output.dir"):  # intermediates and sources: every node reads S3
            continue
        if not _under(path, shared):
            fix = f"put it under {where}" if where else "give the job a shared volume (cluster.eks.pvc_name)"
            extra = " or use an s3:// prefix" if key.endswith("work_dir") else ""
            problems.append((key, f"{path} is not on storage all {job.trainer.num_nodes} nodes share; {fix}{extra}"))
    return problems


def s3_prefix_problem(uri: str) -> str | None:
    """Why the workers cannot use an s3:// intermediates prefix, checked from here (bucket reachable), or None.
    boto3 honours AWS_ENDPOINT_URL (https://docs.aws.amazon.com/sdkref/latest/guide/feature-ss-endpoints.html)."""
    import importlib.util

    if importlib.util.find_spec("s3fs") is None:
        return f"{uri}: DataTrove reaches s3:// through fsspec's s3fs, which is not installed; pip install s3fs"
    if importlib.util.find_spec("boto3") is None:
        return None  # nothing to check with; the job reports it
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    bucket = uri.removeprefix("s3://").split("/", 1)[0]
    try:
        boto3.client("s3").head_bucket(Bucket=bucket)
    except (BotoCoreError, ClientError) as exc:
        return f"{uri}: bucket {bucket} cannot be reached from here ({exc}); create it or fix the URI or credentials"
    return None


def s3_source_problem(uri: str, fmt: str, region: str = "") -> str | None:
    """Why a data_prep source at an s3:// URI cannot be read, checked from here by listing it as the training data's
    s3:// paths are (launcher/data_store.py, boto3), or None. The job reads it through DataTrove's fsspec I/O (s3fs)."""
    import importlib.util

    from llm_launch.launcher.data_sources import SUFFIXES
    from llm_launch.launcher.data_store import BotoS3Store, StoreError

    if importlib.util.find_spec("boto3") is None:
        return None  # nothing to check with; the job reports it
    try:
        names = BotoS3Store(uri, region).files()
    except StoreError as exc:
        return str(exc)
    if not names:
        return f"{uri}: no object at that key or under that prefix; check the URI"
    if names != [""] and not any(Path(n).suffix.lower() in SUFFIXES[fmt] for n in names):
        return f"{uri}: no {fmt} files ({', '.join(SUFFIXES[fmt])}) under that prefix; check the URI or the format"
    return None


def input_paths(job: JobConfig) -> list[tuple[str, str | None]]:
    """(key, path) of every input the job's task reads: data_prep's sources and tokenizer for a prepare job, the
    training data, tokenizer and pretrained checkpoint for tasks that train (none for a smoke test). Clusters map
    these into the job's container (SageMaker input channels)."""
    if job.task == "prepare":
        key = "data_prep.tokenizer_path" if job.data_prep.tokenizer_path else "training.data.tokenizer_path"
        tokenizer = job.data_prep.tokenizer_path or job.training.data.tokenizer_path
        return [*((f"data_prep.sources[{i}].path", s.path) for i, s in enumerate(job.data_prep.sources)),
                (key, tokenizer)]
    if not TASKS[job.task].trains_model:
        return []
    data = job.training.data
    return [("training.data.train_path", data.train_path), ("training.data.valid_path", data.valid_path),
            ("training.data.tokenizer_path", data.tokenizer_path), ("model.pretrained_path", job.model.pretrained_path)]


@dataclass(frozen=True)
class SourcePlan:
    """One input as the job will read it."""

    name: str
    format: str
    path: str
    share: float
    """Its weight as a share of the mix."""
    files: int | None
    """Files found under path (local runs); None where the job's machine reads it."""
    size_bytes: int | None
    """Their total size; None where unknown."""
    expected_use: float | None = None
    """Share of its text the weighted mix is expected to take, from the input sizes (filters and deduplication
    change it; the manifest reports what was taken); None where a size is unknown."""


@dataclass(frozen=True)
class DataPrepPlan:
    """What a prepare job resolves to: who works, what it reads, what it drops and what it writes."""

    job_name: str
    task: str
    instance: str
    accelerator: str
    cluster: str
    num_nodes: int
    ranks_per_node: int
    world_size: int
    workers: int
    """Tasks each host runs at a time (LocalPipelineExecutor workers); 0 means every core."""
    hosts: int
    """Hosts sharing each stage's tasks (one per node; local rank 0 of each runs them)."""
    tasks: int | None
    """Tasks of the per-file stages; None where the inputs are read by the job's machines."""
    stages: list[str]
    """The DataTrove stages, in order (a barrier between each)."""
    work_dir: str
    """Where the intermediates go."""
    sources: list[SourcePlan]
    filters: list[str]
    """The active quality filters, one phrase each."""
    dedup: str
    seq_len: int
    tokenizer_path: str
    seed: int
    shuffle: bool
    output_dir: str
    valid_fraction: float
    shard_chars: int
    input_bytes: int | None
    """Size of every input, when all of them are local; None otherwise."""
    max_shards: int | None
    """Shards if nothing were dropped (input_bytes / shard_chars); None when the input size is unknown."""
    max_tokens: int | None
    """Tokens if nothing were dropped, at about 4 characters per token; None when the input size is unknown."""
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for plan.json."""
        return asdict(self)


def _source_plan(source, share: float, local: bool) -> SourcePlan:
    files = size = None
    path = Path(source.path)
    if local and path.exists():
        from llm_launch.launcher.data_sources import list_files

        found = list_files(path, source.format)
        files, size = len(found), sum(f.stat().st_size for f in found)
    return SourcePlan(source.name, str(source.format), source.path, share, files, size)


MIX_WARN_BELOW = 0.5
"""A source whose weight leaves more than half of its text out of the mix draws a warning."""


def expected_mix_use(sizes: list[int], weights: list[float]) -> list[float]:
    """Share of each source's text the mix takes, by dataprep/mix.py's rule: the source with the least text for its
    weight is used whole, each other one up to its weight's share of the mix."""
    live = [i for i, size in enumerate(sizes) if size > 0 and weights[i] > 0]
    total_weight = sum(weights[i] for i in live)
    if not live:
        return [0.0] * len(sizes)
    scale = min(sizes[i] / (weights[i] / total_weight) for i in live)
    return [min(1.0, weights[i] / total_weight * scale / sizes[i]) if i in live else 0.0 for i in range(len(sizes))]


def mix_warnings(names: list[str], weights: list[float], use: list[float], what: str) -> list[str]:
    """One line per source whose weight discards more than half of it."""
    lines = []
    for i, (name, fraction) in enumerate(zip(names, use, strict=True)):
        if weights[i] > 0 and fraction < MIX_WARN_BELOW:
            whole = names[max(range(len(use)), key=lambda j: (use[j], -j))]
            lines.append(f"data_prep.sources[{i}].weight: source {name} contributes only {fraction:.0%} of its {what} "
                         f"at weight {weights[i]:g}: the mix takes {whole} whole and the others in proportion to their "
                         "weights; raise this weight (weights in proportion to the sources' sizes use every source "
                         "whole) or keep it if the subset is intended")
    return lines


def describe_filters(filters: DataFilterConfig) -> list[str]:
    """The quality filters that will drop documents, one phrase each."""
    active = [f"at least {filters.min_words} words" if filters.min_words else "",
              f"at most {filters.max_words} words" if filters.max_words is not None else "",
              f"mean word length {filters.min_mean_word_length:g} to {filters.max_mean_word_length:g}",
              f"alphabetic words >= {filters.min_alpha_word_fraction:.0%}" if filters.min_alpha_word_fraction else "",
              f"repeated lines <= {filters.max_duplicate_line_fraction:.0%}"
              if filters.max_duplicate_line_fraction < 1 else "",
              f"repeated {filters.ngram_size}-grams <= {filters.max_duplicate_ngram_fraction:.0%}"
              if filters.max_duplicate_ngram_fraction < 1 else "",
              f"language in {', '.join(filters.languages)} (score >= {filters.min_language_score:g})"
              if filters.languages else "",
              f"{len(filters.blocked_domains)} blocked domain(s) by {filters.url_field}"
              if filters.blocked_domains else "",
              f"required metadata {filters.required_metadata}" if filters.required_metadata else "",
              f"blocked metadata {filters.blocked_metadata}" if filters.blocked_metadata else ""]
    return [phrase for phrase in active if phrase]


def describe_dedup(dedup: DedupConfig) -> str:
    """Deduplication in one phrase."""
    kinds = [kind for kind, on in (("exact", dedup.exact), (f"near (MinHash LSH, Jaccard >= {dedup.threshold:g}, "
                                   f"{dedup.num_perm} permutations, {dedup.shingle_size}-word shingles)", dedup.near))
             if on]
    return f"{' + '.join(kinds)} by {dedup.granularity}" if kinds else "off"


def make_data_prep_plan(job: JobConfig) -> DataPrepPlan:
    """Resolve a prepare job's plan from its config (and, for local runs, the sizes of its inputs)."""
    cfg = resolve_data_prep(job)
    ranks = job.trainer.nproc_per_node or catalog_ranks_per_node(job.instance)
    local = job.cluster.kind == "local"
    total_weight = sum(s.weight for s in cfg.sources if s.weight > 0) or 1.0
    sources = [_source_plan(s, max(s.weight, 0) / total_weight, local) for s in cfg.sources]
    sizes = [s.size_bytes for s in sources]
    input_bytes = sum(sizes) if sources and None not in sizes else None
    warnings = []
    if input_bytes is not None and len(sources) > 1:
        weights = [max(s.weight, 0) for s in cfg.sources]
        use = expected_mix_use(sizes, weights)
        sources = [replace(source, expected_use=fraction) for source, fraction in zip(sources, use, strict=True)]
        warnings = mix_warnings([s.name for s in sources], weights, use, "input")
    return DataPrepPlan(
        job_name=job.job_name, task=str(job.task), instance=job.instance.name,
        accelerator=str(job.instance.accelerator), cluster=str(job.cluster.kind), num_nodes=job.trainer.num_nodes,
        ranks_per_node=ranks,
        world_size=job.trainer.num_nodes * ranks, workers=cfg.workers, hosts=job.trainer.num_nodes,
        tasks=None if input_bytes is None else prep_tasks(cfg, sum(s.files or 0 for s in sources), input_bytes),
        stages=prep_stages(cfg), work_dir=work_dir(cfg), sources=sources,
        filters=describe_filters(cfg.filters), dedup=describe_dedup(cfg.dedup), seq_len=cfg.seq_len,
        tokenizer_path=cfg.tokenizer_path, seed=cfg.seed, shuffle=cfg.shuffle, output_dir=cfg.output.dir,
        valid_fraction=cfg.split.valid_fraction, shard_chars=cfg.output.shard_chars, input_bytes=input_bytes,
        max_shards=None if input_bytes is None else max(1, math.ceil(input_bytes / cfg.output.shard_chars)),
        max_tokens=None if input_bytes is None else input_bytes // CHARS_PER_TOKEN, warnings=warnings,
    )
