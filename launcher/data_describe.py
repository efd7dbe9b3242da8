"""What a training.data path holds, learned from its metadata and first records without reading it all.

Layouts: our packed shards (index.json), a folder written by `datasets`' save_to_disk (dataset_info.json,
state.json, data-*.arrow), Parquet files, JSONL files, or a plain text file; each local or on S3 (except
packed shards and text, which are local). Schemas, recognised by their fields:
- tokens: an input_ids column (optional labels, -100 = not trained, as transformers writes them);
- sft: messages, or instruction and output (train/data/sft.py);
- preference: prompt, chosen and rejected (train/data/dpo.py);
- text: the column training.data.text_field names.
The plan checks what describe() finds against the job (input_problems); the job checks the same again
at start, where the data is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum
from pathlib import PurePosixPath

from llm_launch.launcher.data_store import LocalStore, S3Store, StoreError

SAMPLE_ROWS = 64
"""Rows read from the start of the first file for the plan's sequence-length and vocabulary checks."""
IGNORE_LABEL = -100


class Layout(str, Enum):
    PACKED = "packed shards"
    SAVED = "datasets save_to_disk folder"
    PARQUET = "Parquet"
    JSONL = "JSONL"
    TEXT = "text"


class Schema(str, Enum):
    TOKENS = "tokens"
    SFT = "sft"
    PREFERENCE = "preference"
    TEXT = "text"
    UNKNOWN = "unknown"


DATA_SUFFIXES = {Layout.PARQUET: (".parquet",), Layout.JSONL: (".jsonl", ".json")}
SAVED_MARKERS = ("dataset_info.json", "state.json")
PREFERENCE_FIELDS = ("prompt", "chosen", "rejected")


@dataclass
class InputInfo:
    """What one data input holds, as far as its metadata and first rows tell."""

    location: str
    layout: Layout
    files: list[str]
    """Data files, relative to the location ('' for the location itself), in reading order."""
    columns: list[str]
    schema: Schema
    row_lengths: list[int] = field(default_factory=list)
    """Lengths of input_ids in the first rows (tokens schema)."""
    max_token_id: int | None = None
    """Largest token id in the first rows (tokens schema)."""

    @property
    def fixed_rows(self) -> int | None:
        """The row length when every sampled row has the same one."""
        return self.row_lengths[0] if self.row_lengths and len(set(self.row_lengths)) == 1 else None


def schema_of(columns: list[str], text_field: str) -> Schema:
    names = set(columns)
    if "input_ids" in names:
        return Schema.TOKENS
    if set(PREFERENCE_FIELDS) <= names:
        return Schema.PREFERENCE
    if "messages" in names or {"instruction", "output"} <= names:
        return Schema.SFT
    if text_field in names:
        return Schema.TEXT
    return Schema.UNKNOWN


def _suffix(name: str) -> str:
    return PurePosixPath(name).suffix.lower()


def _layout(store: LocalStore | S3Store, files: list[str]) -> tuple[Layout, list[str]]:
    where = store.location
    if files == [""]:
        suffix = _suffix(where)
        for layout, suffixes in DATA_SUFFIXES.items():
            if suffix in suffixes:
                return layout, files
        if isinstance(store, LocalStore):
            return Layout.TEXT, files
        raise StoreError(f"{where}: not a .parquet or .jsonl file; point at a save_to_disk folder, Parquet or JSONL")
    if "index.json" in files and isinstance(store, LocalStore):
        return Layout.PACKED, files
    if "dataset_dict.json" in files:
        splits = sorted({name.split("/", 1)[0] for name in files if "/" in name})
        raise StoreError(f"{where} holds a DatasetDict (splits {', '.join(splits)}); point at one split, e.g. "
                         f"{where}/{splits[0] if splits else 'train'}")
    if all(marker in files for marker in SAVED_MARKERS):
        return Layout.SAVED, _saved_files(store)
    for layout, suffixes in DATA_SUFFIXES.items():
        data = [name for name in files if _suffix(name) in suffixes]
        if data:
            others = [name for name in files if _suffix(name) not in suffixes and _suffix(name) in _ALL_SUFFIXES]
            if others:
                raise StoreError(f"{where} mixes {layout.value} files with {others[0]}; keep one format per folder")
            return layout, data
    if "index.json" in files:
        raise StoreError(f"{where}: packed shards are read from a local folder (or a SageMaker channel); copy them "
                         "there, or point at a save_to_disk folder, Parquet or JSONL on S3")
    raise StoreError(f"{where} holds no save_to_disk dataset, .parquet or .jsonl files")


_ALL_SUFFIXES = tuple(s for suffixes in DATA_SUFFIXES.values() for s in suffixes)


def _saved_files(store: LocalStore | S3Store) -> list[str]:
    """The Arrow files of a save_to_disk folder, in order, as its state.json lists them."""
    with store.open("state.json") as raw:
        state = json.loads(raw.read().decode("utf-8"))
    return [entry["filename"] for entry in state.get("_data_files", [])]


def _saved_columns(store: LocalStore | S3Store) -> list[str]:
    with store.open("dataset_info.json") as raw:
        info = json.loads(raw.read().decode("utf-8"))
    return list((info.get("features") or {}).keys())


def first_batch(store: LocalStore | S3Store, layout: Layout, name: str, rows: int = SAMPLE_ROWS):
    """The first rows of one data file as a pyarrow Table (JSONL: a list of records; pyarrow is not imported)."""
    with store.open(name, random_access=layout is Layout.PARQUET) as raw:
        if layout in (Layout.SAVED, Layout.PARQUET):
            import pyarrow as pa
            import pyarrow.parquet as pq
        if layout is Layout.SAVED:
            reader = pa.ipc.open_stream(raw)
            try:
                return pa.Table.from_batches([reader.read_next_batch()]).slice(0, rows)
            except StopIteration:
                return reader.schema.empty_table()
        if layout is Layout.PARQUET:
            batch = next(pq.ParquetFile(raw).iter_batches(batch_size=rows), None)
            return pa.Table.from_batches([batch]) if batch is not None else None
        records = []
        for line in raw:
            try:
                record = json.loads(line) if line.strip() else None
            except ValueError:
                continue  # the packer names a bad line with its place; the plan looks at the good ones
            if record is not None:
                records.append(record if isinstance(record, dict) else {})
                if len(records) == rows:
                    break
        return records


def describe(location: str, text_field: str, region: str = "", *, plan_time: bool = False) -> InputInfo:
    """Layout, schema and first-row facts of a data input; raises StoreError naming what is wrong.
    plan_time reads S3 through boto3 (no torch), else through s3torchconnector."""
    from llm_launch.launcher.data_store import open_store

    store = open_store(location, region, plan_time=plan_time)
    if not store.exists():
        raise StoreError(f"{location} does not exist")
    layout, files = _layout(store, store.files())
    if layout in (Layout.PACKED, Layout.TEXT):
        return InputInfo(location, layout, files, [], Schema.UNKNOWN)
    if not files:
        raise StoreError(f"{location}: its state.json lists no data files; save the dataset again")
    try:
        sample = first_batch(store, layout, files[0])
    except (OSError, ValueError) as exc:  # pyarrow's errors derive from these; json's too
        raise StoreError(f"{store.where(files[0])}: cannot be read as {layout.value} ({exc})") from None
    if layout is Layout.JSONL:
        columns = list(sample[0]) if sample else []
        token_rows = [r.get("input_ids") for r in sample] if "input_ids" in columns else []
    else:
        columns = _saved_columns(store) if layout is Layout.SAVED else (sample.column_names if sample else [])
        token_rows = sample.column("input_ids").to_pylist() if sample is not None and "input_ids" in \
            sample.column_names else []
    info = InputInfo(location, layout, files, columns, schema_of(columns, text_field))
    token_rows = [row for row in token_rows if isinstance(row, list)]
    info.row_lengths = [len(row) for row in token_rows]
    info.max_token_id = max((max(row) for row in token_rows if row), default=None)
    return info


def input_problems(info: InputInfo, *, task: str, seq_len: int, vocab_size: int, tokenizer_size: int | None,
                   text_field: str) -> list[str]:
    """What makes this input unusable for the job, one message each (the caller adds the key)."""
    where, columns = info.location, ", ".join(info.columns) or "none"
    if info.schema is Schema.UNKNOWN:
        return [f"{where} ({info.layout.value}) has columns {columns}: none is input_ids, '{text_field}' "
                "(training.data.text_field), messages, instruction/output or prompt/chosen/rejected"]
    if task == "dpo":
        if info.schema is not Schema.PREFERENCE:
            return [f"{where} holds {info.schema.value} records ({columns}); dpo reads prompt, chosen and rejected"]
        if info.layout is Layout.JSONL and info.files == [""] and not where.startswith("s3://"):
            return []
        return [f"{where} holds preference pairs as {info.layout.value}; dpo reads them from one local JSONL file "
                "for now: write the records as JSONL on the training node's disk"]
    if info.schema is Schema.PREFERENCE:
        return [f"{where} holds preference pairs (prompt, chosen, rejected); train them with task=dpo (docs/dpo.md); "
                "cpt reads text or input_ids, sft reads messages or instruction/output"]
    if info.schema is Schema.SFT and task != "sft":
        return [f"{where} holds SFT records ({columns}); train them with recipe=tiny_llama_sft or "
                "task=sft, or point at text"]
    if info.schema is Schema.TEXT and task == "sft":
        return [f"{where} holds plain text ('{text_field}'); sft needs messages or instruction/output records"]
    if info.schema is not Schema.TOKENS:
        return []
    problems = []
    fixed = info.fixed_rows
    if fixed is not None and fixed != seq_len and info.layout is Layout.SAVED:
        problems.append(f"{where} holds rows of {fixed} tokens (input_ids) but training.seq_len is {seq_len}; set "
                        f"training.seq_len={fixed} or chunk the dataset into {seq_len}-token blocks")
    elif fixed is None and "labels" in info.columns and info.row_lengths:
        problems.append(f"{where} has input_ids of {min(info.row_lengths)} to {max(info.row_lengths)} tokens with "
                        "labels; labelled rows must all be training.seq_len long")
    for limit, what in ((vocab_size, "model.vocab_size"), (tokenizer_size, "the tokenizer's size")):
        if limit is not None and info.max_token_id is not None and info.max_token_id >= limit:
            problems.append(f"{where} has token id {info.max_token_id} in its first rows, beyond {what} ({limit}); "
                            "was it tokenized with another tokenizer?")
            break
    return problems


def is_dataset_input(location: str) -> bool:
    """Whether a path is read through this module (anything but a local packed folder, .jsonl file or text)."""
    if location.startswith("s3://"):
        return True
    from pathlib import Path

    path = Path(location)
    if path.is_file():
        return path.suffix.lower() == ".parquet"
    return path.is_dir() and not (path / "index.json").is_file()
