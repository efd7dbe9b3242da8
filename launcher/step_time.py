"""Seconds per optimizer step of a layout: the one step-time model behind the plan's throughput, time and cost
and action=suggest's ranking (one function, so a suggested row and the plan of its command agree exactly).

A model, not a measurement. Terms (docs/plan.md):

* compute: model FLOPs per token (6N + 12LHQT) plus what recompute runs again, x tokens per step / (world x
  peak per rank x trainer.assumed_mfu). Full recompute runs each layer's forward again (a third of the
  FLOPs); selective in the torch engine recomputes every other layer (half of that); selective under NxD recomputes
  the core attention (NxD's selective checkpointing: the 4 LHQT of the attention scores and values).
* pipeline bubble: (pp - 1) / (virtual_pp x microbatches) of the compute.
* tensor parallelism: per layer and micro-batch, two collectives over the [tokens, hidden] activations in
  forward and two in backward (one more pair under full recompute), each moving 2 (tp - 1) / tp of the
  bytes per rank over the rank's share of the accelerator's peer link (catalog peer_gbytes_per_s x
  accelerators / ranks per node). Not hidden. Left out where the catalog has no peer figure (trn2).
* pipeline parallelism: each stage boundary sends a micro-batch's activations forward and their gradient
  back, over the node network when the stages sit on different nodes. Not hidden.
* data parallelism, over the peer link inside a node and the node network's per-rank share across nodes:
  - fsdp/hsdp gather the parameters twice per micro-batch (forward and backward, compute precision) and
    reduce-scatter fp32 gradients per micro-batch (gradient_sync=every_microbatch) or once per step. Two
    parts of it nothing overlaps: the gather of the root group (embedding, output projection, final norm)
    and the first layer before the first forward, and the reduce-scatter of the root's gradients after the
    last backward. The rest hides behind compute; only what exceeds it counts. hsdp then all-reduces its
    shard across replicas once per step, after backward (not hidden).
  - ddp all-reduces fp32 gradients in buckets during backward; the embedding's, ready last, is not hidden.
  - zero1 (NxD) reduces the gradients and gathers the bf16 weights around the optimizer step, after
    backward: not hidden.
  A ring all-reduce moves 2 (n - 1) / n of the bytes per rank, a gather or a reduce-scatter (n - 1) / n.

Checked against published measurements (tests/launcher/test_step_time.py): torchtitan's Llama 3.1 8B on 8
and 128 H100, NxD's Llama 3.1 8B and 70B on 32 trn1.32xlarge, and the H200 runs in docs/benchmarks.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.devices import native_neuron, uses_nxd
from llm_launch.launcher.memory import shard_degree
from llm_launch.launcher.model_math import flops_per_token, head_dim, param_counts
from llm_launch.launcher.topology import Layout, data_parallel_split, logical_core_config


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
    """Data-parallel traffic that compute does not hide."""

    @property
    def total(self) -> float:
        """All terms."""
        return self.compute + self.bubble + self.tensor_parallel + self.pipeline + self.data_parallel_exposed


@dataclass(frozen=True)
class Throughput:
    """What a step time means for a job: tokens per second and on-demand cost."""

    step: StepTime
    tokens_per_second: float
    """Whole-job tokens per second."""
    cost_per_billion_tokens_usd: float | None
    """On-demand cost of one billion training tokens (None without a price)."""

    @property
    def step_time_s(self) -> float:
        """Seconds per optimizer step."""
        return self.step.total


def peak_tflops_per_rank(job: JobConfig, ranks_per_node: int) -> float | None:
    """bf16 peak of one rank, the MFU denominator. On Trainium native it is the catalog's per-core figure x LNC, as
    torchtitan counts it (79 x 2 = 158 TFLOP/s on trn2 at LNC=2), so MFU compares with the vendor's reference trainer;
    elsewhere the accelerator's figure shared by the ranks on it. None where the catalog has no figure."""
    inst = job.instance
    if native_neuron(job) and inst.bf16_tflops_per_core:
        return inst.bf16_tflops_per_core * logical_core_config(inst)
    if not inst.bf16_tflops_per_accelerator:
        return None
    return inst.bf16_tflops_per_accelerator * inst.accelerators_per_node / ranks_per_node


def fp8_saved_flops_per_token(job: JobConfig) -> float:
    """With training.precision=fp8: the bf16-equivalent FLOPs per token saved by running the decoder layers' linear
    layers (6 x their parameters per token) at the FP8 peak instead of the bf16 one. Attention's score and value
    matmuls, the output projection and recompute stay bf16, as torchao's float8 training leaves them. 0 otherwise."""
    inst = job.instance
    if job.training.precision != "fp8" or not inst.fp8_tflops_per_accelerator or not inst.bf16_tflops_per_accelerator:
        return 0.0
    counts = param_counts(job.model)
    fp8_matmuls = 6 * counts.num_layers * counts.per_layer
    return fp8_matmuls * (1 - inst.bf16_tflops_per_accelerator / inst.fp8_tflops_per_accelerator)


def recompute_flops_per_token(job: JobConfig, mode: str) -> float:
    """FLOPs per token that activation checkpointing runs again in backward."""
    model, seq = job.model, job.training.seq_len
    forward = flops_per_token(model, seq) / 3
    if mode == "full":
        return forward
    if mode == "selective":
        if uses_nxd(job):  # NxD: the core attention (scores and values)
            return 4 * model.num_layers * model.num_attention_heads * head_dim(model) * seq
        return forward / 2  # the GPU engine: every other decoder layer
    return 0.0


def _seconds(volume_bytes: float, gbytes_per_s: float | None) -> float:
    return 0.0 if not gbytes_per_s or volume_bytes <= 0 else volume_bytes / (gbytes_per_s * 1e9)


@dataclass(frozen=True)
class _Links:
    peer: float | None
    """GB/s of one rank to the others of its node, one direction."""
    across: float | None
    """GB/s of one rank across nodes: its share of the node network."""


def _links(job: JobConfig, ranks_per_node: int) -> _Links:
    inst = job.instance
    peer = inst.peer_gbytes_per_s * inst.accelerators_per_node / ranks_per_node if inst.peer_gbytes_per_s else None
    across = inst.network_gbps / 8 / ranks_per_node if inst.network_gbps else None
    return _Links(peer, across)


def estimate_step_time(job: JobConfig, layout: Layout, grad_accum: int) -> StepTime | None:
    """Seconds per step of a layout, or None when the instance has no bf16 peak in the catalog."""
    train, model, topo = job.training, job.model, layout.topology
    peak_tflops = peak_tflops_per_rank(job, topo.ranks_per_node)
    if peak_tflops is None:
        return None
    peak = peak_tflops * 1e12
    tokens_per_step = train.global_batch_size * train.seq_len
    per_token = flops_per_token(model, train.seq_len) + recompute_flops_per_token(job, layout.activation_checkpointing)
    per_token -= fp8_saved_flops_per_token(job)
    compute = per_token * tokens_per_step / (topo.world_size * peak * job.trainer.assumed_mfu)
    microbatches = layout.pp_microbatches or grad_accum
    bubble = compute * (topo.pp - 1) / (layout.virtual_pp * microbatches) if topo.pp > 1 else 0.0

    links = _links(job, topo.ranks_per_node)
    compute_bytes = 2 if train.precision in ("bf16", "fp8") else 4
    activation_bytes = layout.micro_batch_size * train.seq_len * model.hidden_size * compute_bytes
    layers = math.ceil(model.num_layers / topo.pp)

    tensor_parallel = 0.0
    if topo.tp > 1:
        collectives = 4 + (2 if layout.activation_checkpointing == "full" else 0)
        per_rank = collectives * layers * grad_accum * activation_bytes * 2 * (topo.tp - 1) / topo.tp
        tensor_parallel = _seconds(per_rank, links.peer)

    pipeline = 0.0
    if topo.pp > 1:
        link = links.across if topo.dp * topo.tp >= topo.ranks_per_node else links.peer  # a stage fills whole nodes
        sends = 2 * microbatches * layout.virtual_pp
        pipeline = _seconds(sends * activation_bytes / topo.tp, link)

    exposed = _data_parallel_exposed(job, layout, compute_bytes, grad_accum, links, compute)
    return StepTime(compute, bubble, tensor_parallel, pipeline, exposed)


def throughput(job: JobConfig, layout: Layout, grad_accum: int, price_per_node_hour: float | None
               ) -> Throughput | None:
    """Tokens per second and cost per billion tokens of a layout (None without a bf16 peak)."""
    step = estimate_step_time(job, layout, grad_accum)
    if step is None:
        return None
    tokens_per_second = job.training.global_batch_size * job.training.seq_len / step.total
    cost = None
    if price_per_node_hour is not None:
        cost = price_per_node_hour * layout.topology.num_nodes / (tokens_per_second * 3600) * 1e9
    return Throughput(step, tokens_per_second, cost)


def _data_parallel_exposed(job: JobConfig, layout: Layout, compute_bytes: int, grad_accum: int, links: _Links,
                           compute: float) -> float:
    topo = layout.topology
    if topo.dp == 1:
        return 0.0
    counts = param_counts(job.model)
    params = counts.total / (topo.tp * topo.pp)
    ends_split = topo.tp if layout.sequence_parallel or uses_nxd(job) else 1
    if topo.pp == 1:
        root = (counts.embedding + counts.lm_head + counts.final_norm) / ends_split
    else:
        root = max(counts.embedding, counts.lm_head + counts.final_norm) / ends_split
    layer = counts.per_layer / topo.tp
    replicate, shard = data_parallel_split(layout.data_parallel, topo)
    group_link = links.peer if topo.dp * topo.tp <= topo.ranks_per_node else links.across
    mode = layout.data_parallel
    if mode in ("fsdp", "hsdp") and shard_degree(layout) > 1:
        shard_link = links.peer if shard * topo.tp <= topo.ranks_per_node else links.across
        fraction = (shard - 1) / shard
        reduce_scatters = grad_accum if layout.gradient_sync == "every_microbatch" else 1
        total = _seconds((2 * compute_bytes * grad_accum + 4 * reduce_scatters) * params * fraction, shard_link)
        unhidden = _seconds((compute_bytes * (root + layer) + 4 * root) * fraction, shard_link)
        exposed = unhidden + max(0.0, total - unhidden - compute)
        if replicate > 1:
            exposed += _seconds(4 * params / shard * 2 * (replicate - 1) / replicate, links.across)
        return exposed
    ring = 2 * (topo.dp - 1) / topo.dp
    if mode == "zero1":
        return _seconds(4 * params * ring + compute_bytes * params * (topo.dp - 1) / topo.dp, group_link)
    total = _seconds(4 * params * ring, group_link)
    unhidden = _seconds(4 * counts.embedding / ends_split * ring, group_link)
    return unhidden + max(0.0, total - unhidden - compute)
