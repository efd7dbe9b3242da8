"""What a data_prep source is made of: the files of its format under its path, and the pip packages its
settings need on the machine that runs the job.

Shared by the launcher (the plan counts a local source's files; llm-launch checks the packages at plan time
only when that machine is this one, cluster=local) and the preparation job, which lists the same files
and checks the same packages when llm_launch.dataprep.prepare starts where it runs (docs/clusters.md).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from llm_launch.launcher.config.schema import DataPrepConfig
from llm_launch.launcher.problems import Problem

SUFFIXES = {"jsonl": (".jsonl", ".json"), "parquet": (".parquet",), "text": (".txt", ".md"),
            "html": (".html", ".htm"), "pdf": (".pdf",), "docx": (".docx",)}
FORMAT_PACKAGES = {"parquet": ("pyarrow", "pyarrow"), "html": ("trafilatura", "trafilatura"),
                   "pdf": ("pypdf", "pypdf"), "docx": ("docx", "python-docx")}
"""format -> (module imported, pip package that provides it), for the formats that need a library."""
DATA_EXTRA = "(or pip install 'llm-launch[data]')"


def list_files(path: Path, fmt: str) -> list[Path]:
    """The file itself, or the files of the format under a folder, sorted for a stable order."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES[fmt])


def missing_package(fmt: str) -> str | None:
    """The pip package a format needs that is not installed, or None."""
    module, package = FORMAT_PACKAGES.get(fmt, (None, None))
    if module is None or importlib.util.find_spec(module) is not None:
        return None
    return package


def missing_packages(cfg: DataPrepConfig) -> list[Problem]:
    """One problem per setting whose package is not installed in this Python."""
    problems = []
    for module, package in (("datatrove", "datatrove"), ("orjson", "orjson")):
        if importlib.util.find_spec(module) is None:
            problems.append(Problem("task", f"data preparation runs on DataTrove and needs {package}; pip install "
                                    f"{package} {DATA_EXTRA}"))
    if importlib.util.find_spec("s3fs") is None:
        if (cfg.output.work_dir or "").startswith("s3://"):
            problems.append(Problem("data_prep.output.work_dir", "s3:// intermediates need fsspec's s3fs; pip install "
                                    f"s3fs {DATA_EXTRA}, or use a shared folder"))
        for i, source in enumerate(cfg.sources):
            if source.path.startswith("s3://"):
                problems.append(Problem(f"data_prep.sources[{i}].path", "an s3:// source is read through fsspec's "
                                        f"s3fs; pip install s3fs {DATA_EXTRA}, or copy it to a local or shared folder"))
    for i, source in enumerate(cfg.sources):
        package = missing_package(source.format)
        if package:
            problems.append(Problem(f"data_prep.sources[{i}].format", f"reading {source.format} needs {package}; "
                                    f"pip install {package} {DATA_EXTRA}"))
    if cfg.filters.languages and importlib.util.find_spec("langdetect") is None:
        problems.append(Problem("data_prep.filters.languages", "the language filter needs langdetect; pip install "
                                f"langdetect {DATA_EXTRA}, or set languages=[]"))
    if cfg.dedup.near and importlib.util.find_spec("datasketch") is None:
        problems.append(Problem("data_prep.dedup.near", f"needs datasketch; pip install datasketch {DATA_EXTRA}, "
                                "or set data_prep.dedup.near=false"))
    return problems
