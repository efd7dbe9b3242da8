"""One running job per folder: a lock the job holds on its output and checkpoint folders while it runs.

The lock is an advisory flock(2) on <folder>/.llm-launch.lock. The kernel releases it when the
holding process exits, however it exits (kill -9 included), so a lock left by a dead run is seen as
free and taken over. The file records who holds it (pid, host, start time, command) for the message a
second run prints. Where the file system refuses flock (some network mounts), the recorded pid
decides: held while that process lives on this host.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from llm_launch.launcher.processes import process_alive

LOCK_FILE = ".llm-launch.lock"
HELD_BY_LAUNCHER_ENV = "LLM_LAUNCH_HOLDS_LOCK"
"""Set by the local runner to the folder whose lock it holds for the job, so the job does not take it twice."""


_HELD_HERE: set[str] = set()
"""Folders (resolved) whose lock this process holds now."""


def held_here(folder: Path) -> bool:
    """Whether this process holds folder's lock (taken by the command before it wrote anything there)."""
    return str(Path(folder).resolve()) in _HELD_HERE


class FolderInUse(Exception):
    """Another live run holds the folder; the message names it and what to do."""


def _holder(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _in_use(folder: Path, holder: dict, what: str) -> FolderInUse:
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0))) if holder else "?"
    who = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, since {since}" if holder else "another process"
    return FolderInUse(f"{folder} is in use by a running job ({who}); wait for it to finish or stop it, or set "
                       f"{what} to another folder")


class RunLock:
    """Holds <folder>/.llm-launch.lock until release() or process exit."""

    def __init__(self, folder: Path, what: str):
        self.folder, self.what = Path(folder), what
        self.path = self.folder / LOCK_FILE
        self.fd: int | None = None
        self.stale: dict | None = None
        """The record a holder that died without releasing left behind (the lock was taken over)."""

    def _locked_fd(self) -> int:
        """An open descriptor of the lock file holding the flock, or FolderInUse."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise _in_use(self.folder, _holder(self.path), self.what) from None
        except OSError as exc:
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                os.close(fd)
                raise
            holder = _holder(self.path)  # no flock here: trust a recorded live process on this host
            if holder.get("host") == socket.gethostname() and holder.get("pid") != os.getpid() \
                    and process_alive(int(holder.get("pid", 0))):
                os.close(fd)
                raise _in_use(self.folder, holder, self.what) from None
        return fd

    def acquire(self) -> RunLock:
        """Take the lock (noting a holder that died without releasing it) or raise FolderInUse."""
        fd = self._locked_fd()
        self.stale = _holder(self.path) or None
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                  "command": " ".join(sys.argv)[:300]}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        self.fd = fd
        _HELD_HERE.add(str(self.folder.resolve()))
        return self

    def stale_note(self) -> str | None:
        """One line when the lock was taken over from a run that died holding it, else None."""
        if not self.stale:
            return None
        return (f"{self.folder}: the run that held it (pid {self.stale.get('pid', '?')} on "
                f"{self.stale.get('host', '?')}) ended without releasing it; taken over")

    def release(self) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            os.close(self.fd)  # closing drops the flock
            self.fd = None
            _HELD_HERE.discard(str(self.folder.resolve()))

    def __enter__(self) -> RunLock:
        return self if self.fd is not None else self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def in_use(folder: Path, what: str) -> str | None:
    """Why folder cannot be taken now (a live run holds it), or None; takes and changes nothing."""
    if not (Path(folder) / LOCK_FILE).is_file():
        return None
    try:
        os.close(RunLock(folder, what)._locked_fd())
    except FolderInUse as exc:
        return str(exc)
    return None
