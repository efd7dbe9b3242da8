"""One recipe dialect for GPU and Trainium: the intent a recipe names, mapped to what its backend runs.

A recipe says `parallelism.data_parallel: auto` (the default) and leaves `kv_replicator` null; the
launcher turns them into the backend's choice when the job is composed, so plan.json, job.yaml and
the training engine all see the concrete mode:

* neuron.stack auto (Trainium): native (the torch engine on TorchNeuron) on trn2/trn3, nxd on trn1
  (llm_launch.launcher.devices).
* data_parallel auto: FSDP2 full shard on the torch engine (GPUs, CPU, Trainium native), ZeRO-1 on NxD.
  https://pytorch.org/docs/stable/distributed.fsdp.fully_shard.html and
  https://awsdocs-neuron.readthedocs-hosted.com/en/latest/libraries/neuronx-distributed/index.html
* gradient_sync auto: last_microbatch under ddp (one all-reduce per step; DDP's gradients are whole on every
  rank anyway, so skipping the sync costs no memory: torch's DistributedDataParallel.no_sync,
  https://pytorch.org/docs/stable/generated/torch.nn.parallel.DistributedDataParallel.html), every_microbatch
  under fsdp/hsdp/zero1 (gradients stay sharded).
* kv_replicator null on NxD: tp / kv_heads when tp is a multiple of the KV heads (each rank then holds
  one KV head), else 1. The torch engine never replicates KV heads.

Explicit values stay as written and are checked against the backend by llm_launch.launcher.validate.
"""

from __future__ import annotations

from dataclasses import replace

from llm_launch.launcher.config.schema import DataParallel, GradientSync, JobConfig
from llm_launch.launcher.devices import resolve_stack, uses_nxd

TORCH_MODES = (DataParallel.ddp, DataParallel.fsdp, DataParallel.hsdp, DataParallel.none)
"""What the torch engine runs (GPU, CPU, Trainium native)."""
NXD_MODES = (DataParallel.ddp, DataParallel.zero1, DataParallel.none)
"""What the NxD engine runs (Trainium legacy)."""


def backend_modes(job: JobConfig) -> tuple[DataParallel, ...]:
    """The explicit data_parallel values the job's backend runs."""
    return NXD_MODES if uses_nxd(job) else TORCH_MODES


def data_parallel_of(job: JobConfig) -> DataParallel:
    """The concrete data-parallel mode: auto becomes the backend's sharding."""
    mode = job.parallelism.data_parallel
    if mode != DataParallel.auto:
        return mode
    return DataParallel.zero1 if uses_nxd(job) else DataParallel.fsdp


def gradient_sync_for(data_parallel: DataParallel | str, gradient_sync: GradientSync | str) -> GradientSync:
    """The concrete gradient sync of a (concrete) data-parallel mode: auto syncs DDP once per step."""
    if gradient_sync != GradientSync.auto:
        return GradientSync(gradient_sync)
    whole = data_parallel in (DataParallel.ddp, DataParallel.none)
    return GradientSync.last_microbatch if whole else GradientSync.every_microbatch


def kv_replicator_of(job: JobConfig) -> int | None:
    """The KV replication factor: as set, else derived on NxD (tp / kv_heads when that is whole), None on the torch
    engine."""
    par, kv = job.parallelism, job.model.num_key_value_heads
    if par.kv_replicator is not None or not uses_nxd(job):
        return par.kv_replicator
    if kv >= 1 and par.tp > kv and par.tp % kv == 0:
        return par.tp // kv
    return 1


def resolve_dialect(job: JobConfig) -> JobConfig:
    """The job with neuron.stack, data_parallel, gradient_sync and kv_replicator made concrete for its backend
    (idempotent)."""
    job = replace(job, neuron=replace(job.neuron, stack=resolve_stack(job)))
    data_parallel = data_parallel_of(job)
    parallelism = replace(job.parallelism, data_parallel=data_parallel, kv_replicator=kv_replicator_of(job),
                          gradient_sync=gradient_sync_for(data_parallel, job.parallelism.gradient_sync))
    return replace(job, parallelism=parallelism)
