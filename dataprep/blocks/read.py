"""Reading, extraction and normalisation as DataTrove steps.

SourceReader hands each task a contiguous run of the input files (all sources, in source then path order,
so task order is reading order) and yields one DataTrove Document per record (JSONL, Parquet) or per file
(text, HTML, PDF, DOCX: the file is read by Extract, the next step). Document ids are where the document
came from (path:line, path:row N, path), which the manifest's examples name; metadata[MIX_KEY] names it the same
way wherever the source lies (its file's name within the source, and its place among the file's records), and
seeds the mix and split (mix.py), so a corpus moved (to S3, another folder) gives the same dataset. Nothing
unreadable stops a
task: it is counted as bad input (reports.py) with its place, as in the in-memory pipeline (dataprep/read.py).
Files are local paths or s3:// (fsspec) URLs, opened through DataTrove's I/O (files.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from llm_launch.dataprep.blocks.reports import ReportingStep, TaskReport
from llm_launch.dataprep.extract import EXTRACTORS, extract_file
from llm_launch.dataprep.files import input_file
from llm_launch.dataprep.normalize import normalize_text
from llm_launch.dataprep.read import RECORD_FORMATS, read_jsonl, read_parquet
from llm_launch.launcher.config.schema import DataSourceConfig

READ_STEP, EXTRACT_STEP, NORMALIZE_STEP = "read", "extract", "normalize"
MIX_KEY = "mix_key"
"""Metadata key of a document's location-independent name: <file within its source> or <file>#<record number>."""


def task_files(files: list, rank: int, world_size: int) -> list:
    """The contiguous run of files task `rank` of `world_size` reads (earlier tasks get the extra ones)."""
    per, extra = divmod(len(files), world_size)
    start = rank * per + min(rank, extra)
    return files[start:start + per + (rank < extra)]


@dataclass(frozen=True)
class SourceSpec:
    """What reading needs of a source, as plain values (steps are pickled to the worker processes)."""

    format: str
    text_field: str
    id_field: str | None

    @classmethod
    def of(cls, source: DataSourceConfig) -> SourceSpec:
        return cls(str(source.format), source.text_field, source.id_field)


class SourceReader(PipelineStep):
    """Yields the documents of this task's files; bad records are counted, never fatal."""

    name = "read sources"
    type = "📖 - READER"

    def __init__(self, sources: list[DataSourceConfig], files: list[tuple[int, str]], work: str):
        super().__init__()
        self.sources, self.files, self.work = [SourceSpec.of(s) for s in sources], files, work

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        report = TaskReport()
        for index, path, name in task_files(self.files, rank, world_size):
            source = self.sources[index]
            if source.format not in RECORD_FORMATS:
                report.count(index, "documents_read")
                self.stat_update("documents")
                yield Document(text="", id=path, metadata={"source": index, "file": path, "format": source.format,
                                                            MIX_KEY: name})
                continue
            reader = read_jsonl if source.format == "jsonl" else read_parquet
            before = report.tally.total
            try:
                for number, item in enumerate(reader(input_file(path), index, source, report.tally)):
                    report.count(index, "documents_read")
                    self.stat_update("documents")
                    yield Document(text=item.text, id=item.where,
                                   metadata={"source": index, "meta": item.meta, MIX_KEY: f"{name}#{number}"})
            except Exception as exc:  # noqa: BLE001 - a corrupt file is counted, never fatal
                report.tally.add("unreadable_file", path, f"{type(exc).__name__}: {exc}")
            report.count(index, "bad_input", report.tally.total - before)  # the records the reader refused
        for kind, count in report.tally.counts.items():
            self.stat_update(f"bad_{kind}", value=count)
        report.save(self.work, READ_STEP, rank)


class Extract(ReportingStep):
    """Reads the text of whole-file documents (text files as UTF-8; HTML, PDF, DOCX through extract.py)."""

    name = "extract text"
    type = "🛢 - EXTRAC"

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        report = TaskReport()
        for doc in data:
            path = doc.metadata.pop("file", None)
            if path is not None:
                fmt = doc.metadata.pop("format")
                try:
                    with self.track_time():
                        doc.text = (extract_file(input_file(path), fmt) if fmt in EXTRACTORS
                                    else input_file(path).read_bytes().decode("utf-8"))
                except UnicodeDecodeError as exc:
                    report.drop(doc.metadata["source"], "bad_input", "undecodable_bytes", doc.id, str(exc))
                    self.stat_update("bad_undecodable_bytes")
                    continue
                except Exception as exc:  # noqa: BLE001 - a corrupt or unreadable file is counted, never fatal
                    report.drop(doc.metadata["source"], "bad_input", "unreadable_file", doc.id,
                                f"{type(exc).__name__}: {exc}")
                    self.stat_update("bad_unreadable_file")
                    continue
            yield doc
        report.save(self.work, EXTRACT_STEP, rank)


class Normalize(ReportingStep):
    """normalize_text (NFC, newlines, control characters, whitespace); a document left empty is bad input."""

    name = "normalise text"
    type = "✂️ - FORMAT"

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        report = TaskReport()
        for doc in data:
            with self.track_time():
                doc.text = normalize_text(doc.text)
            if not doc.text:
                report.drop(doc.metadata["source"], "bad_input", "empty_document", doc.id, "no text after normalisation")
                self.stat_update("bad_empty_document")
                continue
            yield doc
        report.save(self.work, NORMALIZE_STEP, rank)
