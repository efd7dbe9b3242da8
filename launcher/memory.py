"""Per-device memory estimate of a training job: weights, gradients, optimizer state and activations.

Torch-free and instant, for the pre-submit check; `plan.memory=traced` measures the same job's real
model instead (train/gpu/memory_trace.py). tests/launcher/test_memory_calibration.py holds these
rules within 10% of the traced peaks. The rules:

* Training state follows the mixed-precision accounting of ZeRO (https://arxiv.org/abs/1910.02054)
  as each backend keeps it (docs/plan.md). The torch engine (GPU, CPU, Trainium native) keeps fp32
  parameters, gradients and Adam moments (4 + 4 + 8 bytes per parameter): replicated under
  ddp, sharded over the data-parallel group under fsdp, over the shard group under hsdp
  (llm_launch.launcher.topology.data_parallel_split). NxD (Trainium legacy) with ZeRO-1 keeps bf16 weights (2), fp32
  gradient accumulation (4), and fp32 master weights plus Adam moments (12) sharded over DP.
* FSDP2 on top of the shards, as the engine reshards: the last decoder layer stays gathered at
  the compute precision after forward (the root group, embedding and output projection, is freed
  before the loss); on GPUs CUDA streams add the prefetched layer and one layer's fp32 gradients
  in the reduce-scatter buffer. Under pipeline parallelism every layer and the root stay gathered. With
  parallelism.gradient_sync=last_microbatch and gradient accumulation, FSDP holds the stage's
  whole unsharded fp32 gradients until the last micro-batch.
* Parameters are those of the heaviest pipeline stage (its layers plus the embedding or
  the output projection), divided by tp; the GPU engine splits the embedding and the output
  projection over tp only under sequence parallelism (NxD always does).
* Activations saved for backward per token and layer, for a transformers Llama block with
  SDPA/flash attention (no score matrix kept), in compute-precision elements at bf16: 8 h for the
  two RMSNorms (each keeps a 2-element fp32 copy of its input, its normalised value cast back to
  bf16 and its output), 2 h for q after RoPE and the attention output, 2 kv for k and v after RoPE
  (k and v are not kept before RoPE), and 4 I for gate, up, SiLU(gate) and their product, plus
  fp32 scalars per token (each norm's 1/rms, SDPA's logsumexp per head); at fp32 the norms' input
  is the tensor itself (6 h). activation_bytes_per_token_layer lists the terms; a trace of one layer
  checks them. Tensor parallelism splits all but the norm terms, which sequence parallelism splits
  too. Full recompute keeps each layer's input; selective keeps every other layer's whole set.
* Under pipeline parallelism a rank holds as many micro-batches in flight as torch's schedule runs
  forwards before their backwards: on the first rank pp (1F1B), all of them (GPipe), or for
  interleaved 1F1B (virtual_pp - 1) x pp + 2 (pp - 1) + 1 chunks of one virtual stage each; each
  chunk also keeps its received input and its output (2 h) until its backward. The torch engine's
  peak rank is the first (most in flight) or the last (fewest, plus the logits), whichever holds
  more. The pipeline stages keep FSDP's gradients unsharded until the step's last backward. The
  first rank's embedding backward meets its in-flight micro-batches; on a tensor-parallel slice of
  the embedding (sequence parallelism) it builds the whole vocabulary's gradient (12 bytes per entry).
* On top, the larger of the logits and a recomputed layer's working set. The logits take 12
  bytes per vocabulary entry per token at the peak (bf16 logits, fp32 copy, softmax, gradient)
  plus the final norm's 8 bytes per hidden unit. The GPU engine gathers the full vocabulary on
  every tensor-parallel rank, so tp does not split them there; NxD's vocab-parallel loss keeps
  them split on Trainium.
* LoRA (training.lora): the frozen base weights are held as above, but gradients and Adam state
  (and FSDP's reduce-scatter buffer) exist only for the adapters, r x (in + out) per target layer.
* training.precision=fp8 (torchao float8 with rowwise scaling) counts as bf16: rowwise scaling keeps
  the bf16 inputs and weights for backward and FSDP2 all-gathers bf16 weights (torchao's float8
  all-gather works with tensorwise scaling only, https://github.com/pytorch/torchtitan/blob/main/docs/float8.md).
* A job fits when the total stays within 90% of the device's memory; the rest is left to
  the runtime, allocator fragmentation and (on Trainium) compiler scratch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from llm_launch.launcher.config.schema import ModelConfig
from llm_launch.launcher.model_math import head_dim, lora_params_per_layer, param_counts
from llm_launch.launcher.topology import Layout, data_parallel_split

GIB = 1024**3
USABLE_FRACTION = 0.90
LOGIT_BYTES_PER_ENTRY = 12
SPLIT_EMBEDDING_GRADIENT_BYTES = 12
"""Per vocabulary entry and hidden unit: the embedding's backward on a rank that holds a tensor-parallel slice of it
(the GPU engine under sequence parallelism) builds the gradient of the whole vocabulary (bf16, then fp32 copies) before
keeping its slice. Traced: tests/launcher/fixtures/traced_memory.json, llama3_70b_4xp5_tp8_pp4_1f1b (2 bytes gradient,
10 bytes temporaries per entry, measured at two vocabulary sizes)."""
FINAL_NORM_BYTES = 8
"""Per token, in units of hidden_size: the final RMSNorm's fp32 input and fp32 normalised value."""
FP32_BYTES = 4


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
    source: str = "estimate"
    """estimate (these rules) or traced (torch's memory tracker on the real model)."""
    temporaries: float = 0.0
    """Short-lived buffers at the peak (traced only: the estimate folds them into the terms above)."""

    @property
    def total(self) -> float:
        """Everything above."""
        return self.weights + self.gradients + self.optimizer + self.activations + self.temporaries

    @property
    def usable(self) -> float:
        """The share of capacity a job may plan to use."""
        return self.capacity * USABLE_FRACTION

    @property
    def fits(self) -> bool:
        """Whether the estimate stays within the usable share."""
        return self.total <= self.usable


@dataclass(frozen=True)
class Workload:
    """What the memory estimate reads besides the layout: model, sequence, precision, accelerator, task."""

    model: ModelConfig
    seq_len: int
    precision: str
    accelerator: str
    preference: bool = False
    """A preference (dpo) job: chosen and rejected sequences, and a frozen reference model."""
    lora: bool = False
    """LoRA adapters (a dpo job's reference is then the base model itself)."""
    nxd: bool = False
    """Trained by NxD (Trainium legacy: ZeRO-1 state, vocab-parallel ends); otherwise by the torch engine, whatever the
    accelerator (Trainium native included)."""
    lora_rank: int = 16
    """Adapter rank r (LoRA only)."""
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    """Linear layers that get adapters (LoRA only)."""


def _stage_params(work: Workload, layout: Layout) -> float:
    """Parameters on the heaviest pipeline stage, per tensor-parallel rank. The GPU engine splits the
    embedding and the output projection over tp only under sequence parallelism; NxD always does."""
    counts, topo = param_counts(work.model), layout.topology
    ends_split = topo.tp if layout.sequence_parallel or work.nxd else 1
    if topo.pp == 1:
        layers = counts.num_layers * counts.per_layer + counts.final_norm
        return layers / topo.tp + (counts.embedding + counts.lm_head) / ends_split
    layers = math.ceil(counts.num_layers / topo.pp) * counts.per_layer
    ends = max(counts.embedding, counts.lm_head + counts.final_norm)
    return layers / topo.tp + ends / ends_split


def _trained_params(work: Workload, layout: Layout, params: float) -> tuple[float, float]:
    """(parameters that train on the heaviest stage, those of one decoder layer), per tensor-parallel rank: all of
    them, or only the adapters of a LoRA job (frozen base weights get no gradient and no optimizer state)."""
    topo = layout.topology
    if not work.lora:
        return params, param_counts(work.model).per_layer / topo.tp
    per_layer = lora_params_per_layer(work.model, work.lora_rank, work.lora_targets) / topo.tp
    return math.ceil(work.model.num_layers / topo.pp) * per_layer, per_layer


def shard_degree(layout: Layout) -> int:
    """Ranks one copy of the training state is sharded over."""
    if layout.data_parallel in ("ddp", "none"):
        return 1
    return data_parallel_split(layout.data_parallel, layout.topology)[1]


def activation_bytes_per_token_layer(model: ModelConfig, layout: Layout, compute_bytes: int) -> tuple[float, float]:
    """(bytes kept for backward without recompute, bytes kept with full recompute) per token and decoder layer of a
    transformers Llama-family layer with SDPA (tests/train/gpu/test_layer_activations.py traces one layer), term by
    term:
    * each RMSNorm (two): its input in fp32 (a copy at bf16; at fp32 the layer's input or the residual sum itself),
      the normalised value cast back to the compute precision, and the norm's output (the projections' input),
      plus its fp32 1/rms per token;
    * attention: q and the attention output (h each), k and v after RoPE (kv each; GQA is not expanded), and SDPA's
      fp32 logsumexp per head;
    * MLP: gate, up, SiLU(gate) and their product (I each).
    Tensor parallelism splits the attention and MLP terms; sequence parallelism the norm terms too. Full recompute
    keeps only each layer's input."""
    tp = layout.topology.tp
    hidden = model.hidden_size
    kv = model.num_key_value_heads * head_dim(model)
    sequence_split = tp if layout.sequence_parallel else 1
    norm = 2 * (FP32_BYTES * hidden + 2 * compute_bytes * hidden + FP32_BYTES) / sequence_split
    attention = compute_bytes * (2 * hidden + 2 * kv) + FP32_BYTES * model.num_attention_heads
    mlp = compute_bytes * 4 * model.intermediate_size
    return norm + (attention + mlp) / tp, compute_bytes * hidden / sequence_split


def _pipeline_microbatch_rows(layout: Layout, grad_accum: int) -> float:
    """Rows of one micro-batch as the pipeline runs it: the step's rows (micro_batch_size x accumulation) split into
    pp_microbatches (by default the accumulation count, so micro_batch_size rows)."""
    if layout.topology.pp == 1:
        return layout.micro_batch_size
    return layout.micro_batch_size * grad_accum / (layout.pp_microbatches or grad_accum)


def _in_flight_chunks(layout: Layout, grad_accum: int, rank: int = 0) -> tuple[int, int]:
    """(stage chunks whose activations a pipeline rank holds at once, chunks per rank): a chunk is one
    micro-batch through one of the rank's virtual_pp stages. As torch.distributed.pipelining orders them
    (https://github.com/pytorch/pytorch/blob/main/torch/distributed/pipelining/schedules.py): GPipe runs every
    forward first; 1F1B warms up with pp - rank forwards; interleaved 1F1B with _get_warmup_ops' (virtual_pp - 1)
    x microbatches_per_round + 2 (pp - 1 - rank), then one more forward before each backward."""
    topo = layout.topology
    if topo.pp == 1:
        return 1, 1
    microbatches = layout.pp_microbatches or grad_accum
    if layout.pp_schedule == "gpipe":
        return microbatches, 1
    if layout.pp_schedule != "interleaved_1f1b":
        return min(topo.pp - rank, microbatches), 1
    virtual, total = layout.virtual_pp, microbatches * layout.virtual_pp
    per_round = microbatches // max(1, microbatches // topo.pp)
    warmup = min((virtual - 1) * per_round + 2 * (topo.pp - 1 - rank), total)
    return min(warmup + 1, total), virtual


def _fsdp_gathered(work: Workload, layout: Layout, compute_bytes: int) -> float:
    """FSDP2's unsharded copies at the peak, as the engine reshards (train/gpu/parallelize.py): without
    pipelining only the last layer stays gathered after forward (the root group is freed before the loss);
    on GPUs CUDA streams add the prefetched layer and one layer's fp32 gradients in the reduce-scatter
    buffer. Under pipeline parallelism every layer and the root stay gathered."""
    per_layer = param_counts(work.model).per_layer / layout.topology.tp
    if layout.topology.pp > 1:
        gathered = compute_bytes * _stage_params(work, layout)
    else:
        gathered = compute_bytes * per_layer
    if work.accelerator == "nvidia":
        trained_per_layer = _trained_params(work, layout, 0.0)[1]
        gathered += compute_bytes * per_layer + 4 * trained_per_layer
    return gathered


def estimate_layout_memory(work: Workload, layout: Layout, grad_accum: int, capacity_bytes: float) -> MemoryEstimate:
    """Estimate one device's peak memory for a layout of a workload (see the module docstring)."""
    params = _stage_params(work, layout)
    shard = shard_degree(layout)
    compute_bytes = 2 if work.precision in ("bf16", "fp8") else 4  # fp8: bf16 weights, activations, all-gather
    fsdp = layout.data_parallel in ("fsdp", "hsdp") and not work.nxd

    trained = _trained_params(work, layout, params)[0]
    if work.nxd:
        weights, gradients, optimizer = 2 * params, 4 * trained, 12 * trained / shard
    else:
        weights, gradients, optimizer = 4 * params / shard, 4 * trained / shard, 8 * trained / shard
        if work.lora:
            weights += 4 * trained / shard  # the adapters themselves (fp32), beside the frozen base weights
        if fsdp:
            weights += _fsdp_gathered(work, layout, compute_bytes)
            # torch's pipeline stages turn FSDP's gradient sync off until the step's last backward
            # (PipelineStage.backward_maybe_with_nosync, perform_reduce_grad): unsharded gradients, as with last_microbatch
            if layout.topology.pp > 1 or (layout.gradient_sync == "last_microbatch" and grad_accum > 1):
                gradients = 4 * trained

    if work.preference and not work.lora and not work.nxd:
        weights += 4 * params / shard  # the frozen reference copy (fp32, sharded like the policy)
    # A preference (dpo) micro-batch holds chosen and rejected sequences.
    tokens = work.seq_len * _pipeline_microbatch_rows(layout, grad_accum) * (2 if work.preference else 1)
    layers_per_stage = math.ceil(work.model.num_layers / layout.topology.pp)
    plain, layer_input = activation_bytes_per_token_layer(work.model, layout, compute_bytes)
    mode = layout.activation_checkpointing
    if mode == "full":
        saved, working_set = layers_per_stage * layer_input, plain
    elif mode == "selective":
        kept = math.ceil(layers_per_stage / 2)
        saved, working_set = kept * plain + (layers_per_stage - kept) * layer_input, plain
    else:
        saved, working_set = layers_per_stage * plain, 0.0
    vocab_split = layout.topology.tp if work.nxd else 1  # NxD keeps them split
    logits = tokens * (LOGIT_BYTES_PER_ENTRY * work.model.vocab_size / vocab_split
                       + FINAL_NORM_BYTES * work.model.hidden_size)
    ends = max(logits, tokens * working_set)

    def held(rank: int) -> float:
        chunks, virtual = _in_flight_chunks(layout, grad_accum, rank)
        kept = tokens * saved * chunks / virtual
        if layout.topology.pp > 1:  # each chunk's received input (requires grad) and its output, until its backward
            kept += chunks * tokens * 2 * layer_input
        return kept

    if layout.topology.pp > 1 and not work.nxd:
        # the first pipeline rank holds the most micro-batches, the last the logits: the peak rank is either. The first
        # rank's embedding backward runs while other micro-batches are in flight (with pp = 1 it runs last, when the
        # activations are gone); on a tensor-parallel slice of the embedding it builds the whole vocabulary's gradient.
        embedding_backward = tokens * working_set
        if layout.topology.tp > 1 and layout.sequence_parallel:
            embedding_backward = max(embedding_backward, SPLIT_EMBEDDING_GRADIENT_BYTES * work.model.vocab_size
                                     * work.model.hidden_size)
        activations = max(held(0) + embedding_backward, held(layout.topology.pp - 1) + ends)
    else:
        activations = held(0) + ends

    return MemoryEstimate(weights, gradients, optimizer, activations, capacity_bytes)
