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

Nodes may share the folder or each have their own (SageMaker's /opt/ml/checkpoints): which ranks see
which copy is found out at run time (llm_launch.train.shared_dir), and each copy's owner (its lowest rank) does
what rank 0 does above for its copy, after adding DCP's .metadata where rank 0 did not write it. On
per-node disks each node thus holds its own ranks' shards; SageMaker's checkpoint sync merges them
under one S3 prefix and gives every node the whole prefix back at restart. A resume uses the newest
checkpoint intact on every rank, agreed between all ranks (docs/multinode.md). The dir may also be an
s3:// prefix, written straight through s3torchconnector (llm_launch.train.gpu.checkpoint_store).
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from llm_launch.train.checkpoint_integrity import (
    DCP_METADATA,
    FILES_KEY,
    LATEST,
    STEP_DIR,
    TRAINER_STATE,
    NoUsableCheckpoint,
    checkpoint_problem,
    prune,
    record_files,
    resume_point,
    set_aside,
    step_folders,
    write_latest,
)
from llm_launch.train.errors import JobError
from llm_launch.train.gpu.checkpoint_store import S3Prefix
from llm_launch.train.shared_dir import ranks_sharing
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict

__all__ = ["DCP_METADATA", "LATEST", "TRAINER_STATE", "find_latest", "load_checkpoint", "load_model_weights",
           "resume_from", "save_checkpoint", "step_dir_name"]

STATE_DICT_OPTIONS = StateDictOptions(flatten_optimizer_state_dict=True)
"""Optimizer state and hyperparameters keyed by each parameter's name. Unflattened, DCP stores param_groups as one
list under the same keys on every rank, written once: under pipeline parallelism the stages' groups name different
parameters, so a resumed later stage got the first stage's group and lost its hyperparameters (KeyError 'betas').
torchtitan flattens for the same reason (https://github.com/pytorch/torchtitan, components/optimizer.py;
https://pytorch.org/docs/stable/distributed.checkpoint.html#torch.distributed.checkpoint.state_dict.StateDictOptions)."""

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


def resume_from(root: Path | S3Prefix, *, is_main: bool) -> Path | str | None:
    """The checkpoint a job resumes from, agreed by every rank (collective); rank 0 says in one line what it
    passed over and why.

    JobError when checkpoints are there and none is intact on every rank (training.checkpoint.resume=false
    starts over).
    """
    if isinstance(root, S3Prefix):
        name = _agreed(root, _complete_on_s3(root), None, None)
        return root.path(name) if name else None
    try:
        point, error = resume_point(root), None
    except NoUsableCheckpoint as exc:
        point, error = None, str(exc)
    chosen = point.folder.name if point is not None and point.folder is not None else None
    intact = [p.name for p in step_folders(root) if checkpoint_problem(p) is None]
    name = _agreed(root, intact, chosen, error)
    if is_main and point is not None and point.message() and name == chosen:
        print(point.message(), flush=True)
    if name is None:
        return None
    _refuse_a_save_that_cannot_fit(root, root / name)
    return root / name


def _agreed(root, intact: list[str], chosen: str | None, error: str | None) -> str | None:
    """The checkpoint every rank can resume from: each rank's own choice when they agree, else the newest
    one intact on every rank (nodes with their own disks may hold different ones)."""
    everyone: list = [(chosen, intact, error)]
    if dist.is_initialized() and dist.get_world_size() > 1:
        everyone = [None] * dist.get_world_size()
        dist.all_gather_object(everyone, (chosen, intact, error))
    choices = {c for c, _, _ in everyone}
    if len(choices) == 1 and None not in choices:
        return choices.pop()
    common = set.intersection(*(set(names) for _, names, _ in everyone))
    if common:
        return max(common)
    errors = [e for _, _, e in everyone if e]
    if errors:
        raise JobError(errors[0])
    held = {rank: names[-1] for rank, (_, names, _) in enumerate(everyone) if names}
    if held:
        lacking = [rank for rank, (_, names, _) in enumerate(everyone) if not names]
        raise JobError(f"no checkpoint in {root} is whole on every rank (ranks {lacking} have none; newest held: "
                       f"{held}); give every node the whole checkpoint prefix (SageMaker copies "
                       "cluster.sagemaker.s3_checkpoint_uri to every node at start) or set "
                       "training.checkpoint.resume=false to start over")
    return None


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


_OWNERS: dict[str, tuple[bool, bool]] = {}


def _ownership(root: Path) -> tuple[bool, bool]:
    """(this rank owns its copy of root, some copy lacks rank 0's files): probed once per folder (collective)."""
    key = str(root)
    if key not in _OWNERS:
        sharing = ranks_sharing(root)
        with_rank0 = [sharing if dist.get_rank() == 0 else None]
        dist.broadcast_object_list(with_rank0, src=0)
        _OWNERS[key] = (sharing[0] == dist.get_rank(), len(with_rank0[0]) < dist.get_world_size())
    return _OWNERS[key]


def save_checkpoint(root: Path | S3Prefix, step: int, model, optimizer, scheduler, *, rank: int, keep_last: int,
                    extra: dict | None = None) -> Path | str:
    """Save a complete checkpoint of step (collective: every rank calls it).

    A full disk ends the job with one line (JobError) and the previous checkpoints untouched.
    """
    if isinstance(root, S3Prefix):
        return _save_to_s3(root, step, model, optimizer, scheduler, rank=rank, keep_last=keep_last, extra=extra)
    target = begin_save(root, step)
    with out_of_space_as_job_error(root, step, target.tmp):
        model_state, optim_state = get_state_dict(model, optimizer, options=STATE_DICT_OPTIONS)
        dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=str(target.tmp))
        write_rng_state(target, rank, torch.get_rng_state())
        return complete_save(target, rank=rank, keep_last=keep_last,
                             state={"step": step, "scheduler": scheduler.state_dict(), **(extra or {})})


@dataclass(frozen=True)
class SaveTarget:
    """Where one save goes: a folder (tmp, renamed to final once complete) or a checkpoint name under an S3 prefix."""

    root: Path | S3Prefix
    step: int
    tmp: Path | None = None
    final: Path | None = None
    owner: bool = False
    """This rank owns its copy of root (records the files, renames, moves `latest`, prunes)."""
    copies: bool = False
    """Some copy of root lacks rank 0's files (nodes with their own disks)."""

    @property
    def name(self) -> str:
        return step_dir_name(self.step)


def begin_save(root: Path | S3Prefix, step: int) -> SaveTarget:
    """Clear the way for step's save: an empty step_N.tmp (or no debris under an S3 prefix). Collective."""
    if isinstance(root, S3Prefix):
        if dist.get_rank() == 0:
            root.remove(step_dir_name(step))  # the debris of an earlier attempt at this step
        dist.barrier()
        return SaveTarget(root, step)
    owner, copies = _ownership(root)
    target = SaveTarget(root, step, root / f"{step_dir_name(step)}.tmp", root / step_dir_name(step), owner, copies)
    with out_of_space_as_job_error(root, step, target.tmp):
        if owner:
            shutil.rmtree(target.tmp, ignore_errors=True)
            target.tmp.mkdir(parents=True)
        dist.barrier()
    return target


def dcp_destination(target: SaveTarget) -> dict:
    """Keyword arguments of dcp.save / dcp.async_save for the target."""
    if isinstance(target.root, S3Prefix):
        return target.root.dcp_target(target.name)
    return {"checkpoint_id": str(target.tmp)}


def write_rng_state(target: SaveTarget, rank: int, rng: torch.Tensor) -> None:
    """This rank's RNG state beside its shards."""
    if isinstance(target.root, S3Prefix):
        buffer = io.BytesIO()
        torch.save(rng, buffer)
        target.root.write_bytes(f"{target.name}/rng_rank{rank}.pt", buffer.getvalue())
    else:
        torch.save(rng, target.tmp / f"rng_rank{rank}.pt")


def complete_save(target: SaveTarget, *, rank: int, keep_last: int, state: dict, group=None) -> Path | str:
    """Once every rank has written its shards: record the files, rename, move `latest`, prune (collective over
    group, the default group when None; async saves run this on a checkpoint thread with a group of their own)."""
    root = target.root
    if isinstance(root, S3Prefix):
        dist.barrier(group=group)
        if rank == 0:
            root.write_text(f"{target.name}/{TRAINER_STATE}", json.dumps(state, indent=2) + "\n")
            root.write_text(LATEST, target.name)
            for old in _complete_on_s3(root)[:-keep_last] if keep_last > 0 else []:
                root.remove(old)
        dist.barrier(group=group)
        return root.path(target.name)
    tmp, final = target.tmp, target.final
    with out_of_space_as_job_error(root, target.step, tmp):
        dist.barrier(group=group)
        if target.copies:  # DCP's coordinator (rank 0) wrote .metadata into its own copy only
            metadata = [(tmp / DCP_METADATA).read_bytes() if rank == 0 else None]
            dist.broadcast_object_list(metadata, src=0, group=group)
            if target.owner and rank != 0:
                (tmp / DCP_METADATA).write_bytes(metadata[0])
        if target.owner:
            state = {**state, FILES_KEY: record_files(tmp)}
            (tmp / TRAINER_STATE).write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
            if final.exists():  # a damaged copy this run resumed around: kept, out of the way
                print(f"kept the damaged {final.name} as {set_aside(final).name}", flush=True)
            os.replace(tmp, final)
            write_latest(root, final)
            prune(root, keep_last)
    dist.barrier(group=group)
    return final


@contextmanager
def out_of_space_as_job_error(root: Path | S3Prefix, step: int, tmp: Path | None):
    """A full disk while saving step: one line (JobError), the partial save removed, earlier checkpoints kept."""
    try:
        yield
    except JobError:
        raise
    except (Exception, CheckpointException) as exc:
        if tmp is not None and _disk_full(exc, root):
            raise _no_space(root, step, tmp) from None
        raise


def _complete_on_s3(store: S3Prefix) -> list[str]:
    """Checkpoints of an S3 prefix with their metadata, trainer state and every shard, oldest first."""
    complete = []
    for name in store.names():
        files = store.files(name) if STEP_DIR.match(name) else set()
        if {DCP_METADATA, TRAINER_STATE} <= files:
            metadata = store.storage_reader(name).read_metadata()
            if {info.relative_path for info in (metadata.storage_data or {}).values()} <= files:
                complete.append(name)
    return complete


def _save_to_s3(store: S3Prefix, step: int, model, optimizer, scheduler, *, rank: int, keep_last: int,
                extra: dict | None) -> str:
    """S3 has no rename: the trainer state, then `latest` (one PUT each), written last, make the save complete."""
    target = begin_save(store, step)
    model_state, optim_state = get_state_dict(model, optimizer, options=STATE_DICT_OPTIONS)
    dcp.save({"model": model_state, "optim": optim_state}, **dcp_destination(target))
    write_rng_state(target, rank, torch.get_rng_state())
    return complete_save(target, rank=rank, keep_last=keep_last,
                         state={"step": step, "scheduler": scheduler.state_dict(), **(extra or {})})


KERNEL_CHOICES = ("fused", "foreach")
"""AdamW param_group entries that pick the kernel for the tensors of this layout (train/gpu/optimizer.py)."""


@contextmanager
def kernel_choice_kept(optimizer):
    """Keep the optimizer's kernel choice through loading a checkpoint: Optimizer.load_state_dict restores every
    param_group entry, and a checkpoint written in another layout (every parameter a DTensor, so fused) would turn
    the fused kernel on for this layout's mix of plain tensors and DTensors, which it cannot take."""
    kept = [{key: group.get(key) for key in KERNEL_CHOICES} for group in optimizer.param_groups]
    yield
    for group, choice in zip(optimizer.param_groups, kept, strict=True):
        group.update(choice)


def load_checkpoint(path: Path | str, model, optimizer, scheduler, *, rank: int, store: S3Prefix | None = None
                    ) -> dict:
    """Restore model, optimizer, scheduler and this rank's RNG from a checkpoint (a folder, or with store, the
    name of one under an S3 prefix); returns its trainer state."""
    if store is not None:
        return _load_from_s3(store, str(path), model, optimizer, scheduler, rank=rank)
    model_state, optim_state = get_state_dict(model, optimizer, options=STATE_DICT_OPTIONS)
    state = {"model": model_state, "optim": optim_state}
    try:
        dcp.load(state, checkpoint_id=str(path))
    except (Exception, CheckpointException) as exc:  # noqa: BLE001 - any reason the files cannot be loaded
        cause = _first_failure(exc)
        detail = " ".join(f"{type(cause).__name__}: {cause}".split())[:300]
        raise JobError(f"{path} could not be loaded ({detail}); it is kept as it is; move it away to resume from an "
                       "earlier checkpoint, or set training.checkpoint.resume=false") from exc
    with kernel_choice_kept(optimizer):
        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"],
                       options=STATE_DICT_OPTIONS)
    trainer_state = json.loads((path / TRAINER_STATE).read_text(encoding="utf-8"))
    scheduler.load_state_dict(trainer_state["scheduler"])
    rng = path / f"rng_rank{rank}.pt"
    if rng.is_file():
        torch.set_rng_state(torch.load(rng))
    return trainer_state


def _load_from_s3(store: S3Prefix, name: str, model, optimizer, scheduler, *, rank: int) -> dict:
    model_state, optim_state = get_state_dict(model, optimizer, options=STATE_DICT_OPTIONS)
    state = {"model": model_state, "optim": optim_state}
    dcp.load(state, storage_reader=store.storage_reader(name))
    with kernel_choice_kept(optimizer):
        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"],
                       options=STATE_DICT_OPTIONS)
    trainer_state = json.loads(store.read_text(f"{name}/{TRAINER_STATE}"))
    scheduler.load_state_dict(trainer_state["scheduler"])
    rng = store.read_bytes(f"{name}/rng_rank{rank}.pt")
    if rng is not None:
        torch.set_rng_state(torch.load(io.BytesIO(rng)))
    return trainer_state


def load_model_weights(path: Path, model) -> dict:
    """Restore only the model from a checkpoint (for evaluation); returns its trainer state."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, set_model_state_dict

    state = {"model": get_model_state_dict(model)}
    dcp.load(state, checkpoint_id=str(path))
    set_model_state_dict(model, state["model"])
    return json.loads((path / TRAINER_STATE).read_text(encoding="utf-8"))
