"""A plain-torch forward over NxD shards, computed the way NxD's parallel layers compute it.

Vocab-parallel embedding: each rank looks up its own vocabulary rows (zero elsewhere) and the
results are summed. Column-parallel linears (q/k/v, gate_up, lm_head) produce per-rank slices;
row-parallel linears (o_proj, down_proj) produce per-rank partial sums that are added. Each
rank attends with its own query heads against its own (possibly replicated) KV heads.
"""

from __future__ import annotations

import torch
from llm_launch.train.convert.layout import ModelShape, ShardLayout, pp_rank_of_layer


def _rms(x, weight, eps):
    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def _rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _rope(seq_len, head_dim, theta):
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    freqs = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def sharded_logits(shards: dict[tuple[int, int], dict], shape: ModelShape, layout: ShardLayout,
                   input_ids: torch.Tensor, *, eps: float = 1e-5, theta: float = 10000.0) -> torch.Tensor:
    tp, hd = layout.tp, shape.head_dim
    bsz, seq = input_ids.shape
    first = {r: shards[(r, 0)] for r in range(tp)}
    last = {r: shards[(r, layout.pp - 1)] for r in range(tp)}
    rows = shape.vocab_size // tp
    x = 0
    for r in range(tp):
        local = input_ids - r * rows
        mask = (local < 0) | (local >= rows)
        out = first[r]["model.embed_tokens.weight"][local.clamp(0, rows - 1)]
        x = x + out.masked_fill(mask.unsqueeze(-1), 0.0)
    cos, sin = _rope(seq, hd, theta)
    causal = torch.full((seq, seq), float("-inf")).triu(1)
    for layer in range(shape.num_layers):
        pp_rank = pp_rank_of_layer(layer, shape, layout)
        ranks = [shards[(r, pp_rank)] for r in range(tp)]
        p = f"model.layers.{layer}."
        h = _rms(x, ranks[0][p + "input_layernorm.weight"], eps)
        attn_out = 0
        for state in ranks:
            if layout.fused_qkv:
                qkv = state[p + "self_attn.qkv_proj.weight_qkv"]
                q_rows = shape.num_heads // tp * hd
                kv_rows = (qkv.shape[0] - q_rows) // 2
                wq, wk, wv = qkv.split([q_rows, kv_rows, kv_rows])
            else:
                wq, wk, wv = (state[p + f"self_attn.qkv_proj.weight_{n}"] for n in "qkv")
            q = (h @ wq.T).view(bsz, seq, -1, hd).transpose(1, 2)
            k = (h @ wk.T).view(bsz, seq, -1, hd).transpose(1, 2)
            v = (h @ wv.T).view(bsz, seq, -1, hd).transpose(1, 2)
            q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
            group = q.shape[1] // k.shape[1]
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
            scores = (q @ k.transpose(-1, -2)) / hd**0.5 + causal
            local = (scores.softmax(-1) @ v).transpose(1, 2).reshape(bsz, seq, -1)
            attn_out = attn_out + local @ state[p + "self_attn.o_proj.weight"].T  # row-parallel partial sum
        x = x + attn_out
        h = _rms(x, ranks[0][p + "post_attention_layernorm.weight"], eps)
        mlp_out = 0
        for state in ranks:
            gate, up = (h @ state[p + "mlp.gate_up_proj.weight"].T).chunk(2, dim=-1)
            mlp_out = mlp_out + (torch.nn.functional.silu(gate) * up) @ state[p + "mlp.down_proj.weight"].T
        x = x + mlp_out
    x = _rms(x, last[0]["model.norm.weight"], eps)
    return torch.cat([x @ last[r]["lm_head.weight"].T for r in range(tp)], dim=-1)  # column-parallel slices
