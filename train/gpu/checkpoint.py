"""Sharded checkpoints with torch.distributed.checkpoint (DCP), written atomically.

Layout under the checkpoint folder:
    step_00000040/          one complete checkpoint: DCP shards + .metadata,
                            trainer_state.json (step, scheduler, every file's size and sampled hash)
                            and rng_rank<r>.pt
    step_00000080.tmp/      a save in progress (ignored, replaced by the next save)
    step_00000010.deleting/ a checkpoint being pruned (ignored, deleted by the next save)
    step_00000060.damaged/  a damaged checkpoint moved aside when a resumed run saved that step again
    latest                  the name of the newest complete checkpoint, written last

Every rank writes its shards into the .tmp folder; after a barrier rank 0 records what was written in
trainer_state.json, renames the folder and only then points `latest` at it, so a crash at any moment
leaves the previous checkpoint intact and findable. Checkpoints beyond the newest keep_last are then
renamed out of the namespace and deleted. Which checkpoint counts as complete, and which one a job
resumes from, is train/checkpoint_integrity.py's rule.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from train.checkpoint_integrity import (
    DCP_METADATA,
    FILES_KEY,
    LATEST,
    TRAINER_STATE,
    NoUsableCheckpoint,
    prune,
    record_files,
    resume_point,
    set_aside,
    step_folders,
    write_latest,
)
from train.errors import JobError

__all__ = ["DCP_METADATA", "LATEST", "TRAINER_STATE", "find_latest", "load_checkpoint", "load_model_weights",
           "resume_from", "save_checkpoint", "step_dir_name"]

NO_SPACE_MARKERS = ("No space left on device", "unexpected pos")
"""How a full disk shows in errors that carry no errno: the OS message, and torch.save's zip writer
("enforce fail at inline_container.cc ... unexpected pos")."""


def step_dir_name(step: int) -> str:
    return f"step_{step:08d}"


def find_latest(root: Path) -> Path | None:
    """The newest intact checkpoint (the one `latest` names if intact), or None."""
    try:
        return resume_point(root).folder
    except NoUsableCheckpoint:
        return None


def resume_from(root: Path, *, is_main: bool) -> Path | None:
    """The checkpoint a job resumes from; rank 0 says in one line what it passed over and why.

    JobError when checkpoints are there and none is intact (training.checkpoint.resume=false starts over).
    """
    try:
        point = resume_point(root)
    except NoUsableCheckpoint as exc:
        raise JobError(str(exc)) from None
    if is_main and point.message():
        print(point.message(), flush=True)
    if point.folder is not None:
        _refuse_a_save_that_cannot_fit(root, point.folder)
    return point.folder


def _refuse_a_save_that_cannot_fit(root: Path, previous: Path) -> None:
    """A rerun after a full disk: say so before training steps whose checkpoint cannot be written."""
    needed = sum(p.stat().st_size for p in previous.iterdir() if p.is_file())
    free = shutil.disk_usage(root).free
    if free < needed:
        raise JobError(f"no space left on {root} for the next checkpoint: {free / 2**20:.1f} MiB free, the last one "
                       f"({previous.name}) took {needed / 2**20:.1f} MiB; free space there or set "
                       "training.checkpoint.dir to a larger disk")


def _first_failure(exc: BaseException) -> BaseException:
    """The underlying error of a CheckpointException (DCP gathers every rank's failure into one), else exc."""
    failures = exc.failures if isinstance(exc, CheckpointException) else {}
    return next(iter(failures.values()))[0] if failures else exc


def _disk_full(exc: BaseException, folder: Path) -> bool:
    """Whether a failed write failed for want of space (an errno, an OS message, or torch.save's zip error)."""
    exc = _first_failure(exc)
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return True
        if any(marker in str(exc) for marker in NO_SPACE_MARKERS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _no_space(root: Path, step: int, tmp: Path) -> JobError:
    shutil.rmtree(tmp, ignore_errors=True)  # give the space back; the previous checkpoints stay
    kept = [p.name for p in step_folders(root)]
    kept_text = f"the previous checkpoints are kept ({', '.join(kept)})" if kept else "no earlier checkpoint exists"
    return JobError(f"no space left on {root} while saving step {step}; {kept_text}; free space there or set "
                    "training.checkpoint.dir to a larger disk, then run the job again to resume")


def save_checkpoint(root: Path, step: int, model, optimizer, scheduler, *, rank: int, keep_last: int,
                    extra: dict | None = None) -> Path:
    """Save a complete checkpoint of step (collective: every rank calls it).

    A full disk ends the job with one line (JobError) and the previous checkpoints untouched.
    """
    final = root / step_dir_name(step)
    tmp = root / f"{step_dir_name(step)}.tmp"
    try:
        if rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        dist.barrier()
        model_state, optim_state = get_state_dict(model, optimizer)
        dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=str(tmp))
        torch.save(torch.get_rng_state(), tmp / f"rng_rank{rank}.pt")
        dist.barrier()
        if rank == 0:
            state = {"step": step, "scheduler": scheduler.state_dict(), **(extra or {}), FILES_KEY: record_files(tmp)}
            (tmp / TRAINER_STATE).write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
            if final.exists():  # a damaged copy this run resumed around: kept, out of the way
                print(f"kept the damaged {final.name} as {set_aside(final).name}", flush=True)
            os.replace(tmp, final)
            write_latest(root, final)
            prune(root, keep_last)
    except (Exception, CheckpointException) as exc:
        if _disk_full(exc, root):
            raise _no_space(root, step, tmp) from None
        raise
    dist.barrier()
    return final


def load_checkpoint(path: Path, model, optimizer, scheduler, *, rank: int) -> dict:
    """Restore model, optimizer, scheduler and this rank's RNG from a checkpoint; returns its trainer state."""
    model_state, optim_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optim": optim_state}
    try:
        dcp.load(state, checkpoint_id=str(path))
    except (Exception, CheckpointException) as exc:  # noqa: BLE001 - any reason the files cannot be loaded
        cause = _first_failure(exc)
        detail = " ".join(f"{type(cause).__name__}: {cause}".split())[:300]
        raise JobError(f"{path} could not be loaded ({detail}); it is kept as it is; move it away to resume from an "
                       "earlier checkpoint, or set training.checkpoint.resume=false") from exc
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    trainer_state = json.loads((path / TRAINER_STATE).read_text(encoding="utf-8"))
    scheduler.load_state_dict(trainer_state["scheduler"])
    rng = path / f"rng_rank{rank}.pt"
    if rng.is_file():
        torch.set_rng_state(torch.load(rng))
    return trainer_state


def load_model_weights(path: Path, model) -> dict:
    """Restore only the model from a checkpoint (for evaluation); returns its trainer state."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, set_model_state_dict

    state = {"model": get_model_state_dict(model)}
    dcp.load(state, checkpoint_id=str(path))
    set_model_state_dict(model, state["model"])
    return json.loads((path / TRAINER_STATE).read_text(encoding="utf-8"))
