"""Where each weight of a Llama/Mistral model lives in an NxD TP x PP checkpoint: pure index math.

Shared by the converter (HF <-> NxD files) and the Neuron backend (pipeline cuts), and kept free
of file I/O so every rule can be tested on its own. The rules are those of NxD 2.29's checkpoint
converter and GQA layer (neuronx_distributed/modules/qkv_linear.py and scripts/checkpoint_converter.py in
https://github.com/aws-neuron/neuronx-distributed; docs/trainium.md):

* Column-parallel weights (embedding, lm_head, q/k/v, gate/up) are split on dim 0 and
  row-parallel ones (o_proj, down_proj) on dim 1, in TP-rank order.
* With KV replication (kv_replicator m > 1, kv_heads x m = tp) every rank holds one KV head and
  heads/tp query heads; which ones depends on the hardware:
  - trn1 (interleaved): KV heads repeat as (K0..K{k-1})(K0..K{k-1})..., so rank r holds KV head
    r mod k, and the query heads of that head's group are dealt to its m ranks in order.
  - trn2 (blocked): KV heads repeat as (K0 x m)(K1 x m)..., so rank r holds KV head r // m and
    the query heads stay in their natural, consecutive order.
* Pipeline stages cut the decoder layers evenly (a remainder goes to the later stages) into
  pp x virtual_pp chunks; chunk c runs on PP rank c mod pp. Embeddings live on PP rank 0, the
  final norm and lm_head on the last PP rank.
"""

from __future__ import annotations

from dataclasses import dataclass

from llm_launch.launcher.nxd_layout import HW_BACKENDS, ShardLayout, default_kv_replicator

__all__ = ["HW_BACKENDS", "ModelShape", "ShardLayout", "default_kv_replicator"]  # the layout types, beside the index math

@dataclass(frozen=True)
class ModelShape:
    """The dimensions a checkpoint's tensors must have (from config.json or a conf/model group)."""

    vocab_size: int
    """Rows of the embedding and the lm_head."""
    hidden_size: int
    """Width of the residual stream."""
    intermediate_size: int
    """Width of the SwiGLU MLP."""
    num_layers: int
    """Decoder layers."""
    num_heads: int
    """Query heads."""
    num_kv_heads: int
    """Key/value heads."""
    head_dim: int
    """Width of one head."""
    tie_word_embeddings: bool = False
    """Whether lm_head shares the embedding (then checkpoints may omit lm_head.weight)."""
    qkv_bias: bool = False
    """Whether q, k and v have biases (Qwen2, or attention_bias)."""
    o_bias: bool = False
    """Whether o_proj has a bias (attention_bias of Llama and Qwen3)."""
    qk_norm: bool = False
    """Whether each layer has q_norm and k_norm weights over head_dim (Qwen3)."""


def layout_problems(shape: ModelShape, layout: ShardLayout) -> list[tuple[str, str]]:
    """Every reason this layout cannot shard this model, as (option, message) pairs."""
    tp, m, k = layout.tp, layout.kv_replicator, shape.num_kv_heads
    out: list[tuple[str, str]] = []
    for name, value in (("--tp", tp), ("--pp", layout.pp), ("--virtual-pp", layout.virtual_pp),
                        ("--kv-replicator", m)):
        if value < 1:
            out.append((name, f"must be at least 1, got {value}"))
    if out:
        return out
    if shape.qkv_bias or shape.o_bias or shape.qk_norm:
        what = "QK-norm (q_norm, k_norm)" if shape.qk_norm else "attention biases"
        out.append(("--model", f"the model has {what}, which NxD's Llama modules cannot express; NxD checkpoints hold "
                    "Llama and Mistral models only (train Qwen on a GPU instance, converting with dcp-to-hf/hf-to-dcp)"))
        return out
    if layout.hw not in HW_BACKENDS:
        out.append(("--hw", f"'{layout.hw}' is not one of {', '.join(HW_BACKENDS)}"))
    if shape.num_heads % k:
        out.append(("num_key_value_heads", f"{k} KV heads do not divide {shape.num_heads} query heads"))
    if shape.num_heads % tp:
        out.append(("--tp", f"tp={tp} does not divide the {shape.num_heads} attention heads"))
    if m == 1 and k % tp:
        out.append(("--kv-replicator", f"tp={tp} exceeds or does not divide the {k} KV heads; "
                    f"set --kv-replicator {default_kv_replicator(k, tp)} (kv_heads x kv_replicator = tp)"))
    if m > 1 and k * m != tp:
        out.append(("--kv-replicator", f"{k} KV heads x {m} != tp={tp}; NxD's GQA layer needs "
                    f"kv_heads x kv_replicator = tp (use {default_kv_replicator(k, tp)})"))
    for name, size in (("vocab_size", shape.vocab_size), ("intermediate_size", shape.intermediate_size)):
        if size % tp:
            out.append(("--tp", f"{name} {size} does not divide by tp={tp}"))
    chunks = layout.pp * layout.virtual_pp
    if chunks > shape.num_layers:
        out.append(("--pp", f"pp x virtual_pp = {chunks} exceeds the {shape.num_layers} layers"))
    if layout.pp > 1 and shape.tie_word_embeddings:
        out.append(("--pp", "tied embeddings are not supported with pipeline parallelism on Neuron"))
    return out


def q_heads_of_rank(shape: ModelShape, layout: ShardLayout, rank: int) -> list[int]:
    """Global query-head indices held by TP rank `rank`, in their on-rank order."""
    per_rank = shape.num_heads // layout.tp
    m = layout.kv_replicator
    if m == 1 or layout.hw == "trn2":
        return list(range(rank * per_rank, (rank + 1) * per_rank))
    kv_head, replica = rank % shape.num_kv_heads, rank // shape.num_kv_heads
    group = shape.num_heads // shape.num_kv_heads
    first = kv_head * group + replica * per_rank
    return list(range(first, first + per_rank))


def kv_heads_of_rank(shape: ModelShape, layout: ShardLayout, rank: int) -> list[int]:
    """Global KV-head indices held by TP rank `rank` (one head when replicated)."""
    m = layout.kv_replicator
    if m == 1:
        per_rank = shape.num_kv_heads // layout.tp
        return list(range(rank * per_rank, (rank + 1) * per_rank))
    if layout.hw == "trn2":
        return [rank // m]
    return [rank % shape.num_kv_heads]


def head_rows(heads: list[int], head_dim: int) -> list[tuple[int, int]]:
    """Row ranges [start, stop) of the given heads in a q/k/v weight, merged where contiguous."""
    ranges: list[tuple[int, int]] = []
    for head in heads:
        start, stop = head * head_dim, (head + 1) * head_dim
        if ranges and ranges[-1][1] == start:
            ranges[-1] = (ranges[-1][0], stop)
        else:
            ranges.append((start, stop))
    return ranges


def layer_chunks(num_layers: int, chunks: int) -> list[range]:
    """Layer indices of each pipeline chunk: even split, a remainder added to the last chunks."""
    base, remainder = divmod(num_layers, chunks)
    sizes = [base + (1 if i >= chunks - remainder else 0) for i in range(chunks)]
    out, start = [], 0
    for size in sizes:
        out.append(range(start, start + size))
        start += size
    return out


def pipeline_cuts(num_layers: int, pp: int, virtual_pp: int = 1) -> list[str]:
    """NxDPPModel pipeline_cuts: the name of the last layer of every chunk but the last."""
    return [f"model.layers.{chunk[-1]}" for chunk in layer_chunks(num_layers, pp * virtual_pp)[:-1]]


def pp_rank_of_layer(layer: int, shape: ModelShape, layout: ShardLayout) -> int:
    """The PP rank whose stage runs decoder layer `layer`."""
    for chunk_index, chunk in enumerate(layer_chunks(shape.num_layers, layout.pp * layout.virtual_pp)):
        if layer in chunk:
            return chunk_index % layout.pp
    raise ValueError(f"layer {layer} is outside the model's {shape.num_layers} layers")


def nxd_shard_name(tp_rank: int, pp_rank: int) -> str:
    """File name of one model shard, as NxD's save_checkpoint and converter write it."""
    return f"dp_rank_00_tp_rank_{tp_rank:02d}_pp_rank_{pp_rank:02d}.pt"
