"""Sharded checkpoints with torch.distributed.checkpoint (DCP), written atomically, on any storage.

Layout under the checkpoint dir (a folder, or an s3:// prefix: train.gpu.checkpoint_store):
    step_00000040/          one complete checkpoint: DCP shards + .metadata,
                            trainer_state.json (step, scheduler) and rng_rank<r>.pt
    step_00000080.tmp/      a save in progress (ignored, replaced by the next save; folders only)
    latest                  the name of the newest complete checkpoint, written last

Nodes may share the folder or each have their own (SageMaker's /opt/ml/checkpoints): which ranks see
which copy is found out at run time (train.shared_dir). Every rank writes its shards into its copy's
.tmp folder; each copy's owner (its lowest rank) then adds DCP's .metadata where rank 0 did not write
it, trainer_state.json, renames the folder and only then points `latest` at it, and keeps the newest
keep_last. A crash at any moment leaves the previous checkpoint intact and findable. On per-node disks
each node thus holds a complete-looking folder with its own ranks' shards; SageMaker's checkpoint sync
merges them under one S3 prefix and gives every node the whole prefix back at restart. A resume uses the
newest checkpoint whose every shard is present on every rank, agreed between all ranks.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from train.errors import JobError
from train.gpu.checkpoint_store import LocalFolder, S3Prefix
from train.shared_dir import ranks_sharing

LATEST = "latest"
TRAINER_STATE = "trainer_state.json"
DCP_METADATA = ".metadata"
Store = LocalFolder | S3Prefix


def step_dir_name(step: int) -> str:
    return f"step_{step:08d}"


def _store(root: Path | str | Store) -> Store:
    return root if isinstance(root, (LocalFolder, S3Prefix)) else LocalFolder(root)


def _is_complete(path: Path) -> bool:
    return (path / DCP_METADATA).is_file() and (path / TRAINER_STATE).is_file()


def complete_names(store: Store) -> list[str]:
    """Checkpoints with their metadata and trainer state, oldest first (saves in progress left out)."""
    return [n for n in store.names() if not n.endswith(".tmp") and {DCP_METADATA, TRAINER_STATE} <= store.files(n)]


def missing_shards(store: Store, name: str) -> set[str]:
    """Files the checkpoint's DCP metadata names that this rank cannot see (another node's shards)."""
    metadata = store.storage_reader(name).read_metadata()
    needed = {info.relative_path for info in (metadata.storage_data or {}).values()}
    return needed - store.files(name)


def find_latest(root: Path) -> Path | None:
    """The newest complete checkpoint of a folder: the one `latest` names, else the newest complete one."""
    pointer = root / LATEST
    if pointer.is_file():
        named = root / pointer.read_text(encoding="utf-8").strip()
        if _is_complete(named):
            return named
    complete = complete_names(LocalFolder(root)) if root.is_dir() else []
    return root / complete[-1] if complete else None


def agreed_latest(store: Store) -> str | None:
    """The newest checkpoint every rank holds whole (collective); None when no rank holds any."""
    mine = [n for n in complete_names(store) if not missing_shards(store, n)]
    everyone: list = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, mine)
    common = set.intersection(*(set(names) for names in everyone))
    if common:
        return max(common)
    held = {rank: names[-1] for rank, names in enumerate(everyone) if names}
    if held:
        lacking = [rank for rank, names in enumerate(everyone) if not names]
        raise JobError(f"no checkpoint in {store} is whole on every rank (ranks {lacking} have none; newest held: "
                       f"{held}); give every node the whole checkpoint prefix (SageMaker copies "
                       "cluster.sagemaker.s3_checkpoint_uri to every node at start) or set "
                       "training.checkpoint.resume=false to start over")
    return None


_OWNERS: dict[str, tuple[bool, bool]] = {}


def _ownership(store: Store) -> tuple[bool, bool]:
    """(this rank owns its copy of the store, some copy lacks rank 0's files): probed once per store."""
    key = str(store)
    if key not in _OWNERS:
        if store.is_s3:
            _OWNERS[key] = (dist.get_rank() == 0, False)
        else:
            sharing = ranks_sharing(store.root)
            _OWNERS[key] = (sharing[0] == dist.get_rank(), len(sharing_with_rank0(sharing)) < dist.get_world_size())
    return _OWNERS[key]


def sharing_with_rank0(sharing: list[int]) -> list[int]:
    """The ranks that see rank 0's copy (collective: rank 0 tells everyone what it sees)."""
    seen = [sharing if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(seen, src=0)
    return seen[0]


def _rng_bytes() -> bytes:
    buffer = io.BytesIO()
    torch.save(torch.get_rng_state(), buffer)
    return buffer.getvalue()


def save_checkpoint(root: Path | Store, step: int, model, optimizer, scheduler, *, rank: int, keep_last: int,
                    extra: dict | None = None) -> Path | str:
    """Save a complete checkpoint of step (collective: every rank calls it); returns where it is."""
    store = _store(root)
    owner, copies = _ownership(store)
    name = step_dir_name(step)
    staged = store.staged_name(name)
    if owner:
        store.staging(name)
    dist.barrier()
    model_state, optim_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optim": optim_state}, **store.dcp_target(staged))
    store.write_bytes(f"{staged}/rng_rank{rank}.pt", _rng_bytes())
    dist.barrier()
    if copies:  # DCP's coordinator (rank 0) wrote .metadata into its own copy only
        metadata = [store.read_bytes(f"{staged}/{DCP_METADATA}") if rank == 0 else None]
        dist.broadcast_object_list(metadata, src=0)
        if owner and rank != 0:
            store.write_bytes(f"{staged}/{DCP_METADATA}", metadata[0])
    if owner:
        state = {"step": step, "scheduler": scheduler.state_dict(), **(extra or {})}
        store.write_text(f"{staged}/{TRAINER_STATE}", json.dumps(state, indent=2) + "\n")
        store.publish(staged, name)
        store.write_text(LATEST, name)
        for old in complete_names(store)[:-keep_last]:
            store.remove(old)
    dist.barrier()
    return store.path(name)


def load_from(store: Store, name: str, model, optimizer, scheduler, *, rank: int) -> dict:
    """Restore model, optimizer, scheduler and this rank's RNG from a checkpoint; returns its trainer state."""
    model_state, optim_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optim": optim_state}
    dcp.load(state, **store.dcp_load_target(name))
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    trainer_state = json.loads(store.read_text(f"{name}/{TRAINER_STATE}"))
    scheduler.load_state_dict(trainer_state["scheduler"])
    rng = store.read_bytes(f"{name}/rng_rank{rank}.pt")
    if rng is not None:
        torch.set_rng_state(torch.load(io.BytesIO(rng)))
    return trainer_state


def load_checkpoint(path: Path, model, optimizer, scheduler, *, rank: int) -> dict:
    """load_from for a checkpoint folder."""
    return load_from(LocalFolder(path.parent), path.name, model, optimizer, scheduler, rank=rank)


def load_model_weights(path: Path, model) -> dict:
    """Restore only the model from a checkpoint (for evaluation); returns its trainer state."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, set_model_state_dict

    state = {"model": get_model_state_dict(model)}
    dcp.load(state, checkpoint_id=str(path))
    set_model_state_dict(model, state["model"])
    return json.loads((path / TRAINER_STATE).read_text(encoding="utf-8"))
