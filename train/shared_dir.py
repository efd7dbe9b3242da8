"""Which ranks see the same folder: found out at run time, never assumed.

Nodes may share a file system (FSx for Lustre on EKS or Slurm) or each have their own disk
(SageMaker: /opt/ml is on every instance's own volume). Every rank drops a probe file named
after itself into the folder; after a barrier, the probes a rank can see are the ranks that
share its copy of the folder. The lowest of them is the folder's owner: it packs data there,
finalizes checkpoints there. Collective: every rank calls it.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import torch.distributed as dist

PROBE_PREFIX = ".llm-launch-probe-"


def ranks_sharing(folder: Path) -> list[int]:
    """The ranks (sorted) that see this rank's copy of folder, this rank included."""
    rank = dist.get_rank()
    folder.mkdir(parents=True, exist_ok=True)
    token = [uuid.uuid4().hex if rank == 0 else None]
    dist.broadcast_object_list(token, src=0)
    stem = f"{PROBE_PREFIX}{token[0]}-"
    probe = folder / f"{stem}{rank}"
    probe.write_bytes(b"")
    dist.barrier()
    seen = sorted(int(p.name[len(stem):]) for p in folder.glob(f"{stem}*"))
    dist.barrier()
    probe.unlink(missing_ok=True)
    return seen


def owns(folder: Path) -> bool:
    """Whether this rank is the lowest rank seeing its copy of folder (collective)."""
    return ranks_sharing(folder)[0] == dist.get_rank()
