"""Inputs to work items: which files a source holds, and the records in them.

JSONL and Parquet are read here, record by record, so a malformed line costs one record. Whole-file
formats (text, HTML, PDF, DOCX) become one item each, read and extracted by the worker pool
(process.py), so slow extraction runs on every core. Everything that cannot be read is counted in
a Tally with its place (path:line) and never stops the run.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from llm_launch.dataprep.extract import require
from llm_launch.launcher.config.schema import DataSourceConfig
from llm_launch.launcher.data_sources import SUFFIXES, list_files
from llm_launch.launcher.jsonl import Tally, iter_jsonl

RECORD_FORMATS = ("jsonl", "parquet")
PARQUET_BATCH_ROWS = 4096


@dataclass
class Item:
    """One document to process: its text (records) or the file to read it from (whole-file formats)."""

    source: int
    """Index of the source in data_prep.sources."""
    where: str
    """path:line, path:row, path, or the record's id field: where to look when it shows up in the manifest."""
    fmt: str
    """Format of the source."""
    text: str | None = None
    """The document text of a record; None for whole-file formats."""
    path: str | None = None
    """The file to read and extract (whole-file formats)."""
    meta: dict = field(default_factory=dict)
    """Scalar fields of the record other than the text, for the URL and metadata filters."""


def _scalars(record: dict, text_field: str) -> dict:
    return {k: v for k, v in record.items() if k != text_field and isinstance(v, str | int | float | bool)}


def _record_item(record: object, index: int, where: str, source: DataSourceConfig, tally: Tally,
                 fmt: str) -> Item | None:
    if not isinstance(record, dict):
        tally.add("malformed_json", where, f"a JSON {type(record).__name__}, not an object")
        return None
    text = record.get(source.text_field)
    if text is None:
        tally.add("missing_text_field", where, f"no '{source.text_field}' field")
        return None
    if not isinstance(text, str):
        tally.add("non_string_text", where, f"'{source.text_field}' is a {type(text).__name__}")
        return None
    if source.id_field and record.get(source.id_field) is not None:
        where = f"{where} ({source.id_field}={record[source.id_field]})"
    return Item(index, where, fmt, text=text, meta=_scalars(record, source.text_field))


def read_jsonl(path: Path, index: int, source: DataSourceConfig, tally: Tally) -> Iterator[Item]:
    for where, record in iter_jsonl(path, tally):
        item = _record_item(record, index, where, source, tally, "jsonl")
        if item is not None:
            yield item


def read_parquet(path: Path, index: int, source: DataSourceConfig, tally: Tally) -> Iterator[Item]:
    parquet = require("pyarrow.parquet", "pyarrow")
    with (nullcontext(path) if isinstance(path, Path) else path.open("rb")) as where:  # a RemoteFile (files.py)
        table = parquet.ParquetFile(where)
        if source.text_field not in table.schema_arrow.names:
            tally.add("missing_text_field", str(path), f"no '{source.text_field}' column", count=table.metadata.num_rows)
            return
        row = 0
        for batch in table.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            for record in batch.to_pylist():
                item = _record_item(record, index, f"{path}:row {row}", source, tally, "parquet")
                row += 1
                if item is not None:
                    yield item


def iter_items(index: int, source: DataSourceConfig, tally: Tally) -> Iterator[Item]:
    """Work items of one source in a fixed order; unreadable files and records are counted in tally."""
    root = Path(source.path)
    try:
        files = list_files(root, source.format)
    except OSError as exc:
        tally.add("unreadable_file", str(root), f"{type(exc).__name__}: {exc}")
        return
    if not files:
        tally.add("unreadable_file", str(root), f"no {source.format} files ({', '.join(SUFFIXES[source.format])})")
    for path in files:
        if source.format not in RECORD_FORMATS:
            yield Item(index, str(path), source.format, path=str(path))
            continue
        reader = read_jsonl if source.format == "jsonl" else read_parquet
        try:
            yield from reader(path, index, source, tally)
        except Exception as exc:  # noqa: BLE001 - a corrupt file is counted, never fatal
            tally.add("unreadable_file", str(path), f"{type(exc).__name__}: {exc}")
