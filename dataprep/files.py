"""Input files of a data_prep source wherever they are: a local path, or an fsspec URL such as s3://bucket/prefix
read through DataTrove's I/O layer (datatrove.io: fsspec, s3fs for s3://, https://github.com/huggingface/datatrove/
blob/main/src/datatrove/io.py).

Our readers (read.py, extract.py) take a pathlib.Path; a RemoteFile offers the few Path methods they use (open,
read_bytes, str), so a JSONL, Parquet, text, HTML, PDF or DOCX file in S3 is read by the same code, streamed
(JSONL line by line, Parquet by row groups), never copied to local disk first.
"""

from __future__ import annotations

import os
from pathlib import Path

from llm_launch.launcher.data_sources import SUFFIXES, list_files


def is_url(path: str) -> bool:
    return "://" in path


class RemoteFile:
    """One file at an fsspec URL, opened through DataTrove's open_file."""

    def __init__(self, url: str):
        self.url = url

    def __str__(self) -> str:
        return self.url

    def open(self, mode: str = "rb"):
        from datatrove.io import open_file

        return open_file(self.url, mode)

    def read_bytes(self) -> bytes:
        with self.open("rb") as f:
            return f.read()


def input_file(path: str) -> Path | RemoteFile:
    """What the readers open for a listed input path."""
    return RemoteFile(path) if is_url(path) else Path(path)


def relative_name(root: str, path: str) -> str:
    """A listed file's name within its source, the same wherever the source lies: the path under the source's
    folder or prefix, or the file's own name when the source is that file."""
    if is_url(root):
        prefix = root.rstrip("/") + "/"
        return path[len(prefix):] if path.startswith(prefix) else path.rsplit("/", 1)[-1]
    relative = os.path.relpath(path, root)
    return Path(path).name if relative == "." else Path(relative).as_posix()


def source_files(path: str, fmt: str) -> list[tuple[str, int, object]]:
    """(path or URL, size in bytes, version) of a source's files: the file itself, or its files of the format under
    the folder or prefix, sorted; the version is the mtime (ns) of a local file, the ETag of an S3 object. Raises
    OSError (FileNotFoundError, PermissionError: s3fs's errors too) when the location cannot be listed."""
    if not is_url(path):
        return [(str(p), st.st_size, st.st_mtime_ns) for p in list_files(Path(path), fmt) for st in [p.stat()]]
    from datatrove.io import get_fs_with_filepath

    fs, root = get_fs_with_filepath(path)
    scheme = path.split("://", 1)[0]
    if fs.isfile(root):
        found = {root: fs.info(root)}
    else:
        found = {name: info for name, info in fs.find(root, detail=True).items()
                 if info.get("type") != "directory" and Path(name).suffix.lower() in SUFFIXES[fmt]}
    return [(f"{scheme}://{name}", int(info.get("size") or 0), info.get("ETag") or info.get("mtime"))
            for name, info in sorted(found.items())]
