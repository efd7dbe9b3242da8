"""Per-device memory estimate of a training job: weights, gradients, optimizer state and activations.

The figures are estimates for the pre-submit check, not measurements. Rules:

* Training state follows the mixed-precision accounting of ZeRO (https://arxiv.org/abs/1910.02054)
  as each backend keeps it (docs/plan.md). GPU and CPU keep fp32
  parameters, gradients and Adam moments (4 + 4 + 8 bytes per parameter): replicated under
  ddp, sharded over the data-parallel group under fsdp, over the shard group under hsdp.
  FSDP also holds two gathered layers (the one computing and the one prefetched) at the
  compute precision. Trainium with ZeRO-1 keeps bf16 weights (2), fp32 gradient
  accumulation (4), and fp32 master weights plus Adam moments (12) sharded over DP.
* Parameters are those of the heaviest pipeline stage (its layers plus the embedding or
  the output projection), divided by tp.
* Activations saved for backward per token and layer, counted in elements for a Llama
  block with SDPA/flash attention (no score matrix kept): the two norm inputs and outputs
  (4 h), q before and after RoPE and the attention output (3 h), k and v before and after
  RoPE (4 kv), and gate, up, SiLU(gate) and their product (4 I). Tensor parallelism splits
  all but the 4 h norm terms, which sequence parallelism splits too. Full recompute keeps
  only each layer's input plus one layer's working set; selective recomputes every other
  layer. Under pipeline parallelism a stage holds pp micro-batches in flight (1F1B) or all
  of them (GPipe).
* The last stage also holds the logits: bf16 logits, their fp32 copy and its gradient
  (10 bytes per vocabulary entry per token), split by tp.
* A job fits when the total stays within 90% of the device's memory; the rest is left to
  the runtime, allocator fragmentation and (on Trainium) compiler scratch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from launcher.config.schema import JobConfig
from launcher.model_math import head_dim, param_counts
from launcher.topology import Topology

GIB = 1024**3
USABLE_FRACTION = 0.90


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per device, by component."""

    weights: float
    """Parameters resident on the device (shards plus gathered layers)."""
    gradients: float
    """Gradients (or gradient-accumulation buffers)."""
    optimizer: float
    """Adam moments and, where kept apart, fp32 master weights."""
    activations: float
    """Activations saved for backward, logits included, for the micro-batches in flight."""
    capacity: float
    """Device memory of one rank."""

    @property
    def total(self) -> float:
        """Everything above."""
        return self.weights + self.gradients + self.optimizer + self.activations

    @property
    def usable(self) -> float:
        """The share of capacity a job may plan to use."""
        return self.capacity * USABLE_FRACTION

    @property
    def fits(self) -> bool:
        """Whether the estimate stays within the usable share."""
        return self.total <= self.usable


def _stage_params(job: JobConfig, topo: Topology) -> float:
    """Parameters on the heaviest pipeline stage, per tensor-parallel rank."""
    counts = param_counts(job.model)
    if topo.pp == 1:
        return counts.total / topo.tp
    layers = math.ceil(counts.num_layers / topo.pp) * counts.per_layer
    ends = max(counts.embedding, counts.lm_head + counts.final_norm)
    return (layers + ends) / topo.tp


def _shard_degree(job: JobConfig, topo: Topology) -> int:
    """Ranks one copy of the training state is sharded over."""
    mode = job.parallelism.data_parallel
    if mode in ("fsdp", "zero1"):
        return topo.dp
    if mode == "hsdp":
        return math.gcd(topo.dp, max(1, topo.ranks_per_node // topo.tp))
    return 1


def _activation_elements_per_token_layer(job: JobConfig, tp: int) -> tuple[float, float]:
    """(elements kept without recompute, elements kept with full recompute) per token and layer."""
    model, par = job.model, job.parallelism
    hidden = model.hidden_size
    kv = model.num_key_value_heads * head_dim(model)
    norm_terms = 4 * hidden / (tp if par.sequence_parallel else 1)
    split_terms = (3 * hidden + 4 * kv + 4 * model.intermediate_size) / tp
    layer_input = hidden / (tp if par.sequence_parallel else 1)
    return norm_terms + split_terms, layer_input


def _in_flight_microbatches(job: JobConfig, topo: Topology, grad_accum: int) -> int:
    """Micro-batches whose activations a (first) pipeline stage holds at once."""
    if topo.pp == 1:
        return 1
    microbatches = job.parallelism.pp_microbatches or grad_accum
    if job.parallelism.pp_schedule == "gpipe":
        return microbatches
    return min(topo.pp, microbatches)


def estimate_memory(job: JobConfig, topo: Topology, grad_accum: int, capacity_bytes: float) -> MemoryEstimate:
    """Estimate one device's peak memory for this job (see the module docstring for the rules)."""
    params = _stage_params(job, topo)
    shard = _shard_degree(job, topo)
    trainium = job.instance.accelerator.startswith("trainium")
    compute_bytes = 2 if job.training.precision == "bf16" else 4

    if trainium:
        weights, gradients, optimizer = 2 * params, 4 * params, 12 * params / shard
    else:
        weights, gradients, optimizer = 4 * params / shard, 4 * params / shard, 8 * params / shard
        if job.parallelism.data_parallel in ("fsdp", "hsdp") and shard > 1:
            weights += 2 * compute_bytes * param_counts(job.model).per_layer / topo.tp

    if job.task == "dpo" and not job.training.lora.enabled and not trainium:
        weights += 4 * params / shard  # the frozen reference copy, sharded like the policy
    sequences = job.training.micro_batch_size * (2 if job.task == "dpo" else 1)  # dpo: chosen + rejected
    tokens = job.training.seq_len * sequences
    layers_per_stage = math.ceil(job.model.num_layers / topo.pp)
    plain, layer_input = _activation_elements_per_token_layer(job, topo.tp)
    mode = job.parallelism.activation_checkpointing
    if mode == "full":
        per_microbatch = tokens * (layers_per_stage * layer_input + plain)
    elif mode == "selective":
        kept = math.ceil(layers_per_stage / 2)
        per_microbatch = tokens * (kept * plain + (layers_per_stage - kept) * layer_input + plain)
    else:
        per_microbatch = tokens * layers_per_stage * plain
    activations = per_microbatch * compute_bytes * _in_flight_microbatches(job, topo, grad_accum)
    activations += 10 * tokens * job.model.vocab_size / topo.tp

    return MemoryEstimate(weights, gradients, optimizer, activations, capacity_bytes)
