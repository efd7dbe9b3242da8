"""Per-document work run in a process pool: read or extract, normalise, filter, hash for dedup.

Results come back in input order (Pool.imap), so the output never depends on the worker count.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from llm_launch.dataprep.dedup import MinHasher, Unit, digest
from llm_launch.dataprep.extract import EXTRACTORS, extract_file
from llm_launch.dataprep.filters import QualityFilters
from llm_launch.dataprep.normalize import normalize_text, paragraphs
from llm_launch.dataprep.read import Item
from llm_launch.launcher.config.schema import DataFilterConfig, DedupConfig

CHUNKSIZE = 32


@dataclass
class Processed:
    """The outcome for one item: kept (units set), dropped by a filter, or bad input."""

    source: int
    where: str
    units: list[Unit] = field(default_factory=list)
    """The kept document's dedup units (one for document granularity)."""
    dropped: str | None = None
    """Name of the filter that dropped the document."""
    bad: str | None = None
    """Kind of bad input (unreadable_file, undecodable_bytes, empty_document)."""
    detail: str = ""


class Processor:
    """Everything one worker needs, built once per process."""

    def __init__(self, filters: DataFilterConfig, dedup: DedupConfig):
        self.filters = QualityFilters(filters)
        self.paragraph_units = dedup.granularity == "paragraph"
        self.hasher = MinHasher(dedup.num_perm, dedup.shingle_size) if dedup.near else None

    def _text(self, item: Item) -> str:
        if item.text is not None:
            return item.text
        path = Path(item.path)
        if item.fmt in EXTRACTORS:
            return extract_file(path, item.fmt)
        return path.read_bytes().decode("utf-8")  # text format; UnicodeDecodeError is counted by the caller

    def __call__(self, item: Item) -> Processed:
        try:
            raw = self._text(item)
        except UnicodeDecodeError as exc:
            return Processed(item.source, item.where, bad="undecodable_bytes", detail=str(exc))
        except Exception as exc:  # noqa: BLE001 - a corrupt or unreadable file is counted, never fatal
            return Processed(item.source, item.where, bad="unreadable_file", detail=f"{type(exc).__name__}: {exc}")
        text = normalize_text(raw)
        if not text:
            return Processed(item.source, item.where, bad="empty_document", detail="no text after normalisation")
        reason = self.filters.reason(text, item.meta)
        if reason is not None:
            return Processed(item.source, item.where, dropped=reason)
        pieces = paragraphs(text) if self.paragraph_units else [text]
        units = [Unit(p, digest(p), self.hasher.signature(p) if self.hasher else None) for p in pieces]
        return Processed(item.source, item.where, units=units)


_WORKER: Processor | None = None


def _init_worker(filters: DataFilterConfig, dedup: DedupConfig) -> None:
    global _WORKER
    _WORKER = Processor(filters, dedup)


def _work(item: Item) -> Processed:
    assert _WORKER is not None
    return _WORKER(item)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def process_items(items: Iterable[Item], filters: DataFilterConfig, dedup: DedupConfig,
                  workers: int) -> Iterator[Processed]:
    """Processed items in input order, on `workers` processes (1: in this process)."""
    if workers <= 1:
        processor = Processor(filters, dedup)
        yield from (processor(item) for item in items)
        return
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with multiprocessing.get_context(method).Pool(workers, _init_worker, (filters, dedup)) as pool:
        yield from pool.imap(_work, items, chunksize=CHUNKSIZE)
