"""Which checkpoint folders count, which one a job resumes from, and how old ones are retired.

Only folders named exactly step_<8 digits> are checkpoints; step_N.tmp (a save in progress),
step_N.deleting (being pruned) and step_N.damaged (a damaged checkpoint moved aside when a resumed run
saves that step again) are outside that namespace and never chosen. A checkpoint is intact when
- its trainer_state.json parses, and every file it lists under "files" (all the save wrote, recorded
  after every rank finished) is there with the recorded size and sampled hash (train/file_check.py), and
- every shard file DCP's .metadata names exists and holds the bytes .metadata points into
  (checkpoints written before "files" was recorded are checked this way only).

Resuming takes the folder `latest` names if it is intact, else the newest intact one, saying in one
line why; a damaged folder is never deleted. Pruning renames a folder out of the namespace first and
deletes it after, so a kill part-way leaves nothing that could be taken for a checkpoint.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from llm_launch.launcher.jobfile import LATEST, write_text_atomic
from llm_launch.train.errors import JobError
from llm_launch.train.file_check import file_record, mismatch

TRAINER_STATE = "trainer_state.json"
DCP_METADATA = ".metadata"
STEP_DIR = re.compile(r"^step_\d{8}$")
DELETING = ".deleting"
DAMAGED = ".damaged"
FILES_KEY = "files"
"""trainer_state.json key: {file name: {"bytes", "sampled_sha256"}} of everything the save wrote."""


class NoUsableCheckpoint(Exception):
    """Checkpoints were there to resume from and none is intact; the message says which and why."""


class PointerOutside(JobError):
    """`latest` names something other than a checkpoint folder of its own folder (../other_run/..., an absolute
    path, a symlink that leads out): never followed, the job refuses in one line."""


def step_folders(root: Path) -> list[Path]:
    """Checkpoint folders (step_<8 digits>, nothing else, none a symlink leading out of root), oldest first."""
    if not root.is_dir():
        return []
    inside = root.resolve()
    return sorted(p for p in root.iterdir() if STEP_DIR.match(p.name) and p.is_dir() and p.resolve().parent == inside)


def record_files(folder: Path) -> dict[str, dict]:
    """The files of a finished save (all but trainer_state.json, which will hold this record)."""
    return {p.name: file_record(p) for p in sorted(folder.iterdir()) if p.is_file() and p.name != TRAINER_STATE}


def _dcp_problem(folder: Path) -> str | None:
    """What is wrong with the shards DCP's .metadata names, or None."""
    from torch.distributed.checkpoint import FileSystemReader

    if not (folder / DCP_METADATA).is_file():
        return f"{DCP_METADATA} is missing"
    try:
        metadata = FileSystemReader(str(folder)).read_metadata()
    except Exception as exc:  # noqa: BLE001 - any unreadable .metadata makes the folder unusable
        return f"{DCP_METADATA} cannot be read ({type(exc).__name__})"
    ends: dict[str, int] = {}
    for info in (metadata.storage_data or {}).values():
        ends[info.relative_path] = max(ends.get(info.relative_path, 0), info.offset + info.length)
    for name, end in sorted(ends.items()):
        shard = folder / name
        if not shard.is_file():
            return f"{name} is missing ({DCP_METADATA} names it)"
        if shard.stat().st_size < end:
            return f"{name} holds {shard.stat().st_size} bytes, {DCP_METADATA} points up to byte {end} (truncated)"
    return None


def checkpoint_problem(folder: Path, *, sampled: bool = True) -> str | None:
    """Why a checkpoint folder cannot be resumed from, or None when it is intact.

    sampled=False checks presence and sizes only (no file is read beyond .metadata).
    """
    try:
        state = json.loads((folder / TRAINER_STATE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return f"no {TRAINER_STATE} (the save did not finish)"
    except (OSError, ValueError) as exc:
        return f"{TRAINER_STATE} cannot be read ({type(exc).__name__})"
    for name, record in sorted(state.get(FILES_KEY, {}).items()):
        found = mismatch(folder / name, record["bytes"], record["sampled_sha256"] if sampled else None)
        if found is not None:
            return f"{name}: {found.describe(record['bytes'])}"
    return _dcp_problem(folder)


def set_aside(folder: Path) -> Path:
    """Rename a folder out of the namespace, keeping it (step_N.damaged, .damaged-2, ...); returns the new path."""
    target, n = folder.with_name(f"{folder.name}{DAMAGED}"), 1
    while target.exists():
        n += 1
        target = folder.with_name(f"{folder.name}{DAMAGED}-{n}")
    os.replace(folder, target)
    return target


def write_latest(root: Path, folder: Path) -> None:
    """Point `latest` at folder, atomically."""
    write_text_atomic(root / LATEST, folder.name)


def prune(root: Path, keep_last: int) -> list[Path]:
    """Retire intact checkpoints beyond the newest keep_last: rename out of the namespace, then delete.

    Damaged folders are left for the user to inspect; leftovers of an interrupted prune are finished.
    """
    intact = [p for p in step_folders(root) if checkpoint_problem(p, sampled=False) is None]
    retired = []
    for folder in intact[:-keep_last] if keep_last > 0 else []:
        target = folder.with_name(folder.name + DELETING)
        os.replace(folder, target)
        retired.append(target)
    for leftover in root.glob(f"step_*{DELETING}"):
        shutil.rmtree(leftover, ignore_errors=True)
    return retired


@dataclass
class ResumePoint:
    """Where a job resumes: the checkpoint folder (None: from scratch) and what was passed over, and why."""

    folder: Path | None
    passed_over: list[str] = field(default_factory=list)

    def message(self) -> str | None:
        """One line for the log when the choice is not simply `latest`."""
        if not self.passed_over:
            return None
        return f"{'; '.join(self.passed_over)}; resuming from {self.folder}"


def _named_by_latest(root: Path, pointer: Path) -> Path:
    """The folder `latest` names: a step_<8 digits> folder of root itself, or PointerOutside."""
    name = pointer.read_text(encoding="utf-8", errors="replace").strip()
    named = root / name
    inside = STEP_DIR.match(name) is not None and (not named.exists() or named.resolve().parent == root.resolve())
    if not inside:
        shown = name if len(name) <= 200 else f"{name[:200]}..."
        raise PointerOutside(f"{pointer} names {shown!r}, which is not a checkpoint folder of {root} (a pointer out of "
                             "the checkpoint folder is never followed); write the name of one of its step_<8 digits> "
                             "folders there, or delete it to resume from the newest intact checkpoint")
    return named


def resume_point(root: Path) -> ResumePoint:
    """The checkpoint to resume from: `latest` if intact, else the newest intact one.

    Raises NoUsableCheckpoint when `latest` or step folders exist and none of them is intact, PointerOutside
    when `latest` names anything but a step folder of root.
    """
    passed_over: list[str] = []
    pointer = root / LATEST
    named = None
    if pointer.is_file():
        named = _named_by_latest(root, pointer)
        problem = checkpoint_problem(named) if named.is_dir() else None
        if not named.is_dir():
            passed_over.append(f"{pointer} names {named.name}, which does not exist (deleted by hand, or lost)")
        elif problem:
            passed_over.append(f"{named} is damaged ({problem}); it is kept as it is")
        else:
            return ResumePoint(named)
    for folder in reversed(step_folders(root)):
        if folder == named:
            continue
        problem = checkpoint_problem(folder)
        if problem is None:
            return ResumePoint(folder, passed_over)
        passed_over.append(f"{folder} is incomplete or damaged ({problem}); it is kept as it is")
    if passed_over:
        raise NoUsableCheckpoint(f"no usable checkpoint in {root}: {'; '.join(passed_over)}; restore them, move them "
                                 "away, or set training.checkpoint.resume=false to train from scratch")
    return ResumePoint(None)
