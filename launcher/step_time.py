"""Estimated seconds per optimizer step of a layout, for ranking layouts (action=suggest).

A model, not a measurement: compute runs at trainer.assumed_mfu, and the layout adds recompute,
the pipeline bubble and the communication compute cannot hide. Terms (docs/plan.md):

* compute: FLOPs per token (6N + 12LHQT) x tokens per step / (world x peak per rank x MFU). Full
  recompute runs every layer's forward again (x 8/6), selective every other layer (x 7/6).
* pipeline bubble: (pp - 1) / (virtual_pp x microbatches) of the compute.
* tensor parallelism: per layer and micro-batch, two collectives over the [tokens, hidden]
  activations in forward and two in backward (one more pair under full recompute), each moving
  2 (tp - 1) / tp of the bytes per rank over the peer link (catalog peer_gbytes_per_s). Not hidden.
* pipeline parallelism: each stage boundary sends a micro-batch's activations forward and their
  gradient back, over the node network when the stages sit on different nodes. Not hidden.
* data parallelism: fsdp/hsdp gather the parameters twice per micro-batch (forward and backward,
  compute precision) and reduce-scatter fp32 gradients per micro-batch (gradient_sync=
  every_microbatch) or once per step; hsdp then all-reduces its shard across replicas once per
  step. ddp and zero1 all-reduce fp32 gradients once per step (zero1 also gathers the bf16
  weights once). A ring all-reduce moves 2 (n - 1) / n of the bytes per rank, a gather or a
  reduce-scatter (n - 1) / n; a group inside a node uses the peer link, one across nodes its
  share of the node network (network_gbps / ranks per node). Overlapped with compute, so only
  the part beyond the compute time counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.memory import shard_degree
from llm_launch.launcher.model_math import flops_per_token, param_counts
from llm_launch.launcher.plan import peak_tflops_per_rank
from llm_launch.launcher.topology import Layout, data_parallel_split

RECOMPUTE_FACTOR = {"none": 1.0, "selective": 7 / 6, "full": 8 / 6}


@dataclass(frozen=True)
class StepTime:
    """Seconds per optimizer step, by term."""

    compute: float
    """Model FLOPs (recompute included) at the assumed MFU."""
    bubble: float
    """Pipeline fill and drain."""
    tensor_parallel: float
    """Tensor-parallel collectives (not hidden)."""
    pipeline: float
    """Stage-to-stage sends (not hidden)."""
    data_parallel_exposed: float
    """Data-parallel traffic beyond what compute hides."""

    @property
    def total(self) -> float:
        """All terms."""
        return self.compute + self.bubble + self.tensor_parallel + self.pipeline + self.data_parallel_exposed


def _gbytes_per_s_across_nodes(job: JobConfig, ranks_per_node: int) -> float | None:
    gbps = job.instance.network_gbps
    return gbps / 8 / ranks_per_node if gbps else None


def _seconds(volume_bytes: float, gbytes_per_s: float | None) -> float:
    return 0.0 if not gbytes_per_s or volume_bytes <= 0 else volume_bytes / (gbytes_per_s * 1e9)


def estimate_step_time(job: JobConfig, layout: Layout, grad_accum: int) -> StepTime | None:
    """Seconds per step of a layout, or None when the instance has no bf16 peak in the catalog."""
    inst, train, model, topo = job.instance, job.training, job.model, layout.topology
    peak_tflops = peak_tflops_per_rank(job, topo.ranks_per_node)
    if peak_tflops is None:
        return None
    peak = peak_tflops * 1e12
    tokens_per_step = train.global_batch_size * train.seq_len
    flops = flops_per_token(model, train.seq_len) * tokens_per_step * RECOMPUTE_FACTOR[layout.activation_checkpointing]
    compute = flops / (topo.world_size * peak * job.trainer.assumed_mfu)
    microbatches = layout.pp_microbatches or grad_accum
    bubble = compute * (topo.pp - 1) / (layout.virtual_pp * microbatches) if topo.pp > 1 else 0.0

    peer = inst.peer_gbytes_per_s
    across = _gbytes_per_s_across_nodes(job, topo.ranks_per_node)
    compute_bytes = 2 if train.precision == "bf16" else 4
    tokens_per_micro = layout.micro_batch_size * train.seq_len
    activation_bytes = tokens_per_micro * model.hidden_size * compute_bytes
    layers = math.ceil(model.num_layers / topo.pp)

    tensor_parallel = 0.0
    if topo.tp > 1:
        collectives = 4 + (2 if layout.activation_checkpointing == "full" else 0)
        per_rank = collectives * layers * grad_accum * activation_bytes * 2 * (topo.tp - 1) / topo.tp
        tensor_parallel = _seconds(per_rank, peer)

    pipeline = 0.0
    if topo.pp > 1:
        link = across if topo.dp * topo.tp >= topo.ranks_per_node else peer  # a stage fills whole nodes
        sends = 2 * microbatches * layout.virtual_pp
        pipeline = _seconds(sends * activation_bytes / topo.tp, link)

    params = param_counts(model).total / (topo.tp * topo.pp)
    dp_seconds = _data_parallel_seconds(layout, params, compute_bytes, grad_accum, peer, across)
    return StepTime(compute, bubble, tensor_parallel, pipeline, max(0.0, dp_seconds - compute))


def _data_parallel_seconds(layout: Layout, params: float, compute_bytes: int, grad_accum: int,
                           peer: float | None, across: float | None) -> float:
    topo = layout.topology
    if topo.dp == 1:
        return 0.0
    replicate, shard = data_parallel_split(layout.data_parallel, topo)
    inside_node = topo.dp * topo.tp <= topo.ranks_per_node
    group_link = peer if inside_node else across
    mode = layout.data_parallel
    if mode in ("fsdp", "hsdp") and shard_degree(layout) > 1:
        shard_link = peer if shard * topo.tp <= topo.ranks_per_node else across
        fraction = (shard - 1) / shard
        reduce_scatters = grad_accum if layout.gradient_sync == "every_microbatch" else 1
        volume = (2 * compute_bytes * grad_accum + 4 * reduce_scatters) * params * fraction
        seconds = _seconds(volume, shard_link)
        if replicate > 1:
            seconds += _seconds(4 * params / shard * 2 * (replicate - 1) / replicate, across)
        return seconds
    all_reduce = 4 * params * 2 * (topo.dp - 1) / topo.dp
    gather = 2 * params * (topo.dp - 1) / topo.dp if mode == "zero1" else 0.0
    return _seconds(all_reduce + gather, group_link)
