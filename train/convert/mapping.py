"""Which slices of which Hugging Face tensors make up each tensor of an NxD shard, as data.

One description serves both directions: hf-to-nxd reads the listed slices and concatenates
them; nxd-to-hf cuts a shard's tensor into the same pieces and writes each back at its place.
"""

from __future__ import annotations

from dataclasses import dataclass

from llm_launch.train.convert.layout import (
    ModelShape,
    ShardLayout,
    head_rows,
    kv_heads_of_rank,
    pp_rank_of_layer,
    q_heads_of_rank,
)

EMBED = "model.embed_tokens.weight"
FINAL_NORM = "model.norm.weight"
LM_HEAD = "lm_head.weight"
IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)
"""HF buffers some older checkpoints carry; NxD models recompute them, so they are skipped."""


@dataclass(frozen=True)
class Piece:
    """A slice of one HF tensor: the given index ranges along dim (all of it when ranges is None)."""

    hf_key: str
    dim: int
    ranges: tuple[tuple[int, int], ...] | None = None

    def length(self, full: int) -> int:
        return full if self.ranges is None else sum(stop - start for start, stop in self.ranges)


@dataclass(frozen=True)
class ShardTensor:
    """One tensor of an NxD shard: its pieces concatenated along cat_dim, in order."""

    nxd_key: str
    pieces: tuple[Piece, ...]
    cat_dim: int = 0


def hf_shapes(shape: ModelShape) -> dict[str, tuple[int, ...]]:
    """Every tensor a Hugging Face Llama, Mistral, Qwen2 or Qwen3 checkpoint holds, with its shape."""
    h, q_width, kv_width = shape.hidden_size, shape.num_heads * shape.head_dim, shape.num_kv_heads * shape.head_dim
    out: dict[str, tuple[int, ...]] = {EMBED: (shape.vocab_size, h)}
    for i in range(shape.num_layers):
        p = f"model.layers.{i}."
        out.update({
            p + "input_layernorm.weight": (h,),
            p + "self_attn.q_proj.weight": (q_width, h),
            p + "self_attn.k_proj.weight": (kv_width, h),
            p + "self_attn.v_proj.weight": (kv_width, h),
            p + "self_attn.o_proj.weight": (h, q_width),
            p + "post_attention_layernorm.weight": (h,),
            p + "mlp.gate_proj.weight": (shape.intermediate_size, h),
            p + "mlp.up_proj.weight": (shape.intermediate_size, h),
            p + "mlp.down_proj.weight": (h, shape.intermediate_size),
        })
        if shape.qkv_bias:
            out.update({p + "self_attn.q_proj.bias": (q_width,), p + "self_attn.k_proj.bias": (kv_width,),
                        p + "self_attn.v_proj.bias": (kv_width,)})
        if shape.o_bias:
            out[p + "self_attn.o_proj.bias"] = (h,)
        if shape.qk_norm:
            out.update({p + "self_attn.q_norm.weight": (shape.head_dim,), p + "self_attn.k_norm.weight": (shape.head_dim,)})
    out[FINAL_NORM] = (h,)
    out[LM_HEAD] = (shape.vocab_size, h)
    return out


def optional_hf_keys(shape: ModelShape) -> set[str]:
    """Keys a valid checkpoint may leave out (lm_head when tied to the embedding)."""
    return {LM_HEAD} if shape.tie_word_embeddings else set()


def _even(size: int, tp: int, rank: int) -> tuple[tuple[int, int], ...]:
    part = size // tp
    return ((rank * part, (rank + 1) * part),)


def _layer_tensors(shape: ModelShape, layout: ShardLayout, layer: int, tp_rank: int) -> list[ShardTensor]:
    p = f"model.layers.{layer}."
    q_rows = tuple(head_rows(q_heads_of_rank(shape, layout, tp_rank), shape.head_dim))
    kv_rows = tuple(head_rows(kv_heads_of_rank(shape, layout, tp_rank), shape.head_dim))
    q = Piece(p + "self_attn.q_proj.weight", 0, q_rows)
    k = Piece(p + "self_attn.k_proj.weight", 0, kv_rows)
    v = Piece(p + "self_attn.v_proj.weight", 0, kv_rows)
    if layout.fused_qkv:
        attention = [ShardTensor(p + "self_attn.qkv_proj.weight_qkv", (q, k, v))]
    else:
        attention = [ShardTensor(p + "self_attn.qkv_proj.weight_q", (q,)),
                     ShardTensor(p + "self_attn.qkv_proj.weight_k", (k,)),
                     ShardTensor(p + "self_attn.qkv_proj.weight_v", (v,))]
    mlp_rows = _even(shape.intermediate_size, layout.tp, tp_rank)
    return [
        ShardTensor(p + "input_layernorm.weight", (Piece(p + "input_layernorm.weight", 0),)),
        *attention,
        ShardTensor(p + "self_attn.o_proj.weight", (Piece(p + "self_attn.o_proj.weight", 1, q_rows),), cat_dim=1),
        ShardTensor(p + "post_attention_layernorm.weight", (Piece(p + "post_attention_layernorm.weight", 0),)),
        ShardTensor(p + "mlp.gate_up_proj.weight", (Piece(p + "mlp.gate_proj.weight", 0, mlp_rows),
                                                     Piece(p + "mlp.up_proj.weight", 0, mlp_rows))),
        ShardTensor(p + "mlp.down_proj.weight", (Piece(p + "mlp.down_proj.weight", 1, mlp_rows),), cat_dim=1),
    ]


def shard_tensors(shape: ModelShape, layout: ShardLayout, tp_rank: int, pp_rank: int,
                  with_lm_head: bool = True) -> list[ShardTensor]:
    """The tensors of shard (tp_rank, pp_rank) in the order they are written."""
    vocab_rows = _even(shape.vocab_size, layout.tp, tp_rank)
    out: list[ShardTensor] = []
    if pp_rank == 0:
        out.append(ShardTensor(EMBED, (Piece(EMBED, 0, vocab_rows),)))
    for layer in range(shape.num_layers):
        if pp_rank_of_layer(layer, shape, layout) == pp_rank:
            out.extend(_layer_tensors(shape, layout, layer, tp_rank))
    if pp_rank == layout.pp - 1:
        out.append(ShardTensor(FINAL_NORM, (Piece(FINAL_NORM, 0),)))
        if with_lm_head:
            out.append(ShardTensor(LM_HEAD, (Piece(LM_HEAD, 0, vocab_rows),)))
    return out


def shard_tensor_shape(tensor: ShardTensor, full_shapes: dict[str, tuple[int, ...]]) -> tuple[int, ...]:
    """Shape of a shard tensor, from the full HF shapes of its pieces."""
    total = 0
    rest: list[int] = []
    for piece in tensor.pieces:
        full = list(full_shapes[piece.hf_key])
        full[piece.dim] = piece.length(full[piece.dim])
        total += full[tensor.cat_dim]
        rest = full
    rest[tensor.cat_dim] = total
    return tuple(rest)
