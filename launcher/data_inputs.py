"""Plan-time checks of training.data.train_path and valid_path, whatever they hold.

Reads only metadata and the first rows (launcher/data_describe.py): the layout, the schema against the task,
row length against training.seq_len and token ids against the tokenizer and model.vocab_size. Local
paths are checked when the job runs here; s3:// URIs (and SageMaker channel paths, through the channel's
S3 prefix) wherever the launcher can read them. An S3 input it cannot read is a warning: the job checks
it again where it runs.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.problems import Findings

DATA_KEYS = ("training.data.train_path", "training.data.valid_path")


def tokenizer_size(tokenizer_dir: Path) -> int | None:
    """Ids in a tokenizer.json (vocabulary and added tokens), or None when it cannot be read."""
    try:
        data = json.loads((tokenizer_dir / "tokenizer.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ids = list(data.get("model", {}).get("vocab", {}).values()) + [t["id"] for t in data.get("added_tokens", [])]
    return max(ids) + 1 if ids else None


def _s3_location(job: JobConfig, path: str) -> str | None:
    """The s3:// URI a path reads: itself, or on SageMaker the channel prefix a container path points into."""
    if path.startswith("s3://"):
        return path
    from llm_launch.launcher.clusters.sagemaker.paths import DATA_ROOT, data_channel_of

    channel = data_channel_of(path)
    prefix = job.cluster.sagemaker.channels.get(channel) if channel else None
    if not prefix:
        return None
    rest = path[len(f"{DATA_ROOT}/{channel}"):].strip("/")
    return f"{prefix.rstrip('/')}/{rest}" if rest else prefix.rstrip("/")


def _packed_seq_len(path: Path, job: JobConfig, key: str, out: Findings) -> None:
    try:
        seq_len = json.loads((path / "index.json").read_text(encoding="utf-8")).get("seq_len")
    except (OSError, ValueError):
        return  # the job's integrity check names a damaged index
    if isinstance(seq_len, int) and seq_len != job.training.seq_len:
        out.error(key, f"{path} holds packed rows of {seq_len} tokens but training.seq_len is {job.training.seq_len}; "
                  f"set training.seq_len={seq_len} or pack the data again")


_described_in_this_search: dict[tuple[str, str, str], object] | None = None


@contextmanager
def describe_once():
    """Within it, each input is described once: action=suggest validates a dozen layouts of one job, whose
    data does not change between them (outside it every check reads the input afresh)."""
    global _described_in_this_search
    _described_in_this_search = {}
    try:
        yield
    finally:
        _described_in_this_search = None


def _described(location: str, text_field: str, region: str):
    """describe() at plan time, or the StoreError it raised."""
    from llm_launch.launcher.data_describe import describe
    from llm_launch.launcher.data_store import StoreError

    memo, key = _described_in_this_search, (location, text_field, region)
    if memo is not None and key in memo:
        return memo[key]
    try:
        found = describe(location, text_field, region, plan_time=True)
    except StoreError as exc:
        found = exc
    if memo is not None:
        memo[key] = found
    return found


def check_data_inputs(job: JobConfig, out: Findings, *, runs_here: bool) -> None:
    """Every data path the job reads, checked as far as its metadata and first rows allow."""
    from llm_launch.launcher.data_describe import Layout, Schema, input_problems
    from llm_launch.launcher.data_store import StoreError

    data = job.training.data
    size = tokenizer_size(Path(data.tokenizer_path))
    for key, path in zip(DATA_KEYS, (data.train_path, data.valid_path), strict=True):
        if path is None:
            continue
        remote = _s3_location(job, path)
        if remote is None and not (runs_here and Path(path).exists()):
            continue  # missing local paths are named by the path check; remote folders by the job
        location = remote or path
        info = _described(location, data.text_field, job.cluster.region)
        if isinstance(info, StoreError):
            exc = info
            if remote is None:
                out.error(key, str(exc))
            else:
                out.warn(key, f"not checked before the job: {exc}")
            continue
        if info.layout is Layout.PACKED:
            _packed_seq_len(Path(location), job, key, out)
            continue
        if info.schema is Schema.UNKNOWN and job.task != "sft" and info.columns:
            if any(p.field == "training.data.text_field" for p in out.problems):
                continue  # one line for the key, whichever path showed it first
            out.error("training.data.text_field", f"'{data.text_field}' is not a field of {key}'s records (they have "
                      f"{', '.join(sorted(info.columns))}); set training.data.text_field=<one of those>")
            continue
        for message in input_problems(info, task=job.task, seq_len=job.training.seq_len,
                                      vocab_size=job.model.vocab_size, tokenizer_size=size,
                                      text_field=data.text_field):
            out.error(key, message)
