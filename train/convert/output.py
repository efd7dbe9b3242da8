"""An output folder that appears whole or not at all, and is never overwritten by accident."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path


def output_problem(path: Path, force: bool) -> str | None:
    """Why writing to path is refused (it exists and --force was not given), else None."""
    if path.exists() and not force:
        return f"{path} already exists; pick another --output or pass --force to replace it"
    if path.exists() and not path.is_dir():
        return f"{path} exists and is not a folder"
    return None


@contextlib.contextmanager
def staged_output(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces final, on failure it is removed."""
    final = final.resolve()
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old)
    else:
        os.replace(tmp, final)
