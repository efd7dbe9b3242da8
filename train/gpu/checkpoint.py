"""Sharded checkpoints with torch.distributed.checkpoint (DCP), written atomically.

Layout under the checkpoint folder:
    step_00000040/          one complete checkpoint: DCP shards + .metadata,
                            trainer_state.json (step, scheduler) and rng_rank<r>.pt
    step_00000080.tmp/      a save in progress (ignored, replaced by the next save)
    latest                  the name of the newest complete checkpoint, written last

Every rank writes its shards into the .tmp folder; after a barrier rank 0 adds
trainer_state.json, renames the folder and only then points `latest` at it, so a crash at
any moment leaves the previous checkpoint intact and findable. Checkpoints beyond the
newest keep_last are deleted after that.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from launcher.jobfile import write_text_atomic

LATEST = "latest"
TRAINER_STATE = "trainer_state.json"
DCP_METADATA = ".metadata"


def step_dir_name(step: int) -> str:
    return f"step_{step:08d}"


def _is_complete(path: Path) -> bool:
    return (path / DCP_METADATA).is_file() and (path / TRAINER_STATE).is_file()


def _complete_checkpoints(root: Path) -> list[Path]:
    found = [p for p in root.glob("step_*") if p.is_dir() and not p.name.endswith(".tmp") and _is_complete(p)]
    return sorted(found, key=lambda p: p.name)


def find_latest(root: Path) -> Path | None:
    """The newest complete checkpoint: the one `latest` names, else the newest complete folder."""
    pointer = root / LATEST
    if pointer.is_file():
        named = root / pointer.read_text(encoding="utf-8").strip()
        if _is_complete(named):
            return named
    complete = _complete_checkpoints(root)
    return complete[-1] if complete else None


def save_checkpoint(root: Path, step: int, model, optimizer, scheduler, *, rank: int, keep_last: int,
                    extra: dict | None = None) -> Path:
    """Save a complete checkpoint of step (collective: every rank calls it)."""
    final = root / step_dir_name(step)
    tmp = root / f"{step_dir_name(step)}.tmp"
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    dist.barrier()
    model_state, optim_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=str(tmp))
    torch.save(torch.get_rng_state(), tmp / f"rng_rank{rank}.pt")
    dist.barrier()
    if rank == 0:
        state = {"step": step, "scheduler": scheduler.state_dict(), **(extra or {})}
        (tmp / TRAINER_STATE).write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        write_text_atomic(root / LATEST, final.name)
        for old in _complete_checkpoints(root)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    dist.barrier()
    return final


def load_checkpoint(path: Path, model, optimizer, scheduler, *, rank: int) -> dict:
    """Restore model, optimizer, scheduler and this rank's RNG from a checkpoint; returns its trainer state."""
    model_state, optim_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optim": optim_state}
    dcp.load(state, checkpoint_id=str(path))
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
