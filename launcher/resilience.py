"""What the plan says about checkpoints and failures: the host memory async checkpoints stage their copy in,
and the checks of training.checkpoint and training.watchdog that need more than one section.

An async save (training.checkpoint.mode=async, train/gpu/async_checkpoint.py) copies every tensor a rank
checkpoints into host memory before training goes on, and keeps those buffers for the next save. A rank
checkpoints its share of the fp32 weights and the Adam moments: 4 + 8 bytes per parameter it holds (the memory
estimate's weight and optimizer shards, llm_launch.launcher.memory), replicated ranks each stage their own
copy (DCP plans which rank writes what only after staging). A node therefore holds ranks_per_node times that.
The job is refused when that is more than HOST_STAGING_FRACTION of the node's host memory (the catalog's
host_memory_gib): the rest is the processes, the data loader and the page cache. On a CPU instance the state
already lives in host memory, so the copy is added to each rank's estimate instead.
"""

from __future__ import annotations

from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.devices import native_neuron, uses_nxd
from llm_launch.launcher.memory import GIB, MemoryEstimate, shard_degree
from llm_launch.launcher.model_math import param_counts
from llm_launch.launcher.problems import Findings
from llm_launch.launcher.topology import Layout

HOST_STAGING_FRACTION = 0.5
"""The share of a node's host memory async checkpoints may stage into."""
CHECKPOINTED_BYTES_PER_PARAM = 12
"""fp32 weights (4) and Adam's two fp32 moments (8), per parameter a rank holds."""


def staging_bytes_per_rank(job: JobConfig, layout: Layout) -> float:
    """Host memory one rank's async-save staging copy takes (0 for synchronous saves)."""
    if job.training.checkpoint.mode != "async":
        return 0.0
    counts, topo = param_counts(job.model), layout.topology
    per_stage = counts.total / topo.pp if topo.pp > 1 else counts.total
    return CHECKPOINTED_BYTES_PER_PARAM * per_stage / topo.tp / shard_degree(layout)


def check_async_checkpoints(job: JobConfig, staging_per_node: float, ranks_per_node: int, memory: MemoryEstimate,
                            out: Findings) -> None:
    """Refuse async saves where the backend has none, or where their staging copy does not fit (one line each)."""
    if job.training.checkpoint.mode != "async":
        return
    key = "training.checkpoint.mode"
    if uses_nxd(job):
        out.error(key, "async saves use DCP's async_save (the torch engine); NxD on Trainium saves synchronously; "
                  "set training.checkpoint.mode=sync")
        return
    if native_neuron(job):
        out.error(key, "TorchNeuron's documentation does not confirm DCP's async_save; set "
                  "training.checkpoint.mode=sync")
        return
    per_rank = staging_per_node / max(1, ranks_per_node)
    if job.instance.accelerator == "cpu":
        if memory.total + per_rank > memory.usable:
            out.error(key, f"async saves copy {per_rank / GIB:.2f} GiB per rank into host memory, which with the "
                      f"estimated {memory.total / GIB:.2f} GiB exceeds 90% of the {memory.capacity / GIB:.1f} GiB a "
                      f"rank has on {job.instance.name}; set training.checkpoint.mode=sync")
        return
    host = job.instance.host_memory_gib
    if host is None:
        out.warn(key, f"async saves stage {staging_per_node / GIB:.1f} GiB per node in host memory; the catalog "
                 f"does not give {job.instance.name}'s host memory, so the plan cannot check that it fits")
        return
    if staging_per_node > HOST_STAGING_FRACTION * host * GIB:
        out.error(key, f"async saves stage {staging_per_node / GIB:.1f} GiB per node in host memory ({ranks_per_node} "
                  f"ranks x {per_rank / GIB:.1f} GiB), more than {HOST_STAGING_FRACTION:.0%} of the {host:g} GiB a "
                  f"{job.instance.name} node has; set training.checkpoint.mode=sync")
