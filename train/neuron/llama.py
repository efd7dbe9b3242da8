"""Llama and Mistral decoders built from NxD's parallel layers (TP, SP, GQA with KV replication).

Plain torch modules, independent of transformers' modeling classes, so the same code runs with
the transformers 4.x of the Neuron images and the 5.x used on GPU. Parameter names match the
NxD checkpoint layout that llm-launch-convert writes (model.embed_tokens, model.layers.N.
self_attn.qkv_proj.weight_q|k|v or weight_qkv, o_proj, mlp.gate_up_proj, down_proj, model.norm,
lm_head). Import this module only after llm_launch.train.neuron.runtime.require_neuron().

With sequence parallelism the hidden states between layers are [seq/tp, batch, hidden] (NxD's
convention: the embedding reduce-scatters along the sequence, column-parallel layers gather it,
row-parallel layers scatter it back); without it they are [batch, seq, hidden].
"""

from __future__ import annotations

import math

import torch
from llm_launch.launcher.config.schema import ModelConfig
from llm_launch.launcher.model_math import head_dim as model_head_dim
from llm_launch.train.loss import IGNORE
from neuronx_distributed.modules.qkv_linear import GQAQKVColumnParallelLinear
from neuronx_distributed.parallel_layers.layers import ColumnParallelLinear, ParallelEmbedding, RowParallelLinear
from neuronx_distributed.parallel_layers.loss_functions import parallel_cross_entropy
from neuronx_distributed.parallel_layers.parallel_state import get_tensor_model_parallel_size
from torch import nn

INIT_STD = 0.02


def _init_normal(weight: torch.Tensor) -> torch.Tensor:
    return nn.init.normal_(weight, mean=0.0, std=INIT_STD)


class RMSNorm(nn.Module):
    """RMS norm computed in fp32; with SP its gradient is all-reduced over TP by NxD."""

    def __init__(self, size: int, eps: float, sequence_parallel: bool, dtype: torch.dtype):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size, dtype=dtype))
        self.weight.sequence_parallel_enabled = sequence_parallel
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return (self.weight * x.to(dtype)).to(dtype)


def rope_frequencies(model: ModelConfig) -> tuple[torch.Tensor, float]:
    """(inv_freq, attention scaling) of the model's RoPE as transformers' Llama computes them, rope scaling included
    (Llama 3.1's llama3 type), from the same config the job trains (llm_launch.train.model.hf_config)."""
    import dataclasses
    from pathlib import Path

    from llm_launch.train.model import hf_config
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    if model.pretrained_path and not (Path(model.pretrained_path) / "config.json").is_file():
        model = dataclasses.replace(model, pretrained_path=None)  # an NxD checkpoint of a run: the job's own fields
    rotary = LlamaRotaryEmbedding(config=hf_config(model))
    return rotary.inv_freq.float(), float(rotary.attention_scaling)


def rotary_tables(seq_len: int, inv_freq: torch.Tensor, scaling: float, device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of HF Llama's RoPE for these frequencies, [seq, dim]."""
    freqs = torch.outer(torch.arange(seq_len, dtype=torch.float32, device=device), inv_freq.to(device))
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos() * scaling, emb.sin() * scaling


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class CoreAttention(nn.Module):
    """Causal softmax attention on [batch, heads, seq, dim] (the selective-recompute unit)."""

    def __init__(self, sliding_window: int | None):
        super().__init__()
        self.sliding_window = sliding_window

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        seq = q.shape[-2]
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
        pos = torch.arange(seq, device=q.device)
        masked = pos.unsqueeze(0) > pos.unsqueeze(1)
        if self.sliding_window:
            masked = masked | (pos.unsqueeze(1) - pos.unsqueeze(0) >= self.sliding_window)
        scores = scores.masked_fill(masked, torch.finfo(scores.dtype).min)
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        return torch.matmul(probs, v)


class Attention(nn.Module):
    def __init__(self, model: ModelConfig, *, kv_replicator: int, fused_qkv: bool, sequence_parallel: bool,
                 dtype: torch.dtype):
        super().__init__()
        tp = get_tensor_model_parallel_size()
        self.head_dim = model_head_dim(model)
        self.sequence_parallel = sequence_parallel
        self.local_heads = model.num_attention_heads // tp
        self.local_kv_heads = model.num_key_value_heads * kv_replicator // tp
        self.qkv_proj = GQAQKVColumnParallelLinear(
            model.hidden_size, [model.num_attention_heads * self.head_dim, model.num_key_value_heads * self.head_dim],
            bias=False, gather_output=False, init_method=_init_normal, sequence_parallel_enabled=sequence_parallel,
            kv_size_multiplier=kv_replicator, fuse_qkv=fused_qkv, dtype=dtype)
        self.o_proj = RowParallelLinear(model.num_attention_heads * self.head_dim, model.hidden_size, bias=False,
                                        input_is_parallel=True, init_method=_init_normal,
                                        sequence_parallel_enabled=sequence_parallel, dtype=dtype)
        self.core_attn = CoreAttention(model.sliding_window)

    def _heads(self, x: torch.Tensor, count: int) -> torch.Tensor:
        if self.sequence_parallel:  # [seq, batch, width] -> [batch, heads, seq, dim]
            seq, batch, _ = x.shape
            return x.view(seq, batch, count, self.head_dim).permute(1, 2, 0, 3)
        batch, seq, _ = x.shape
        return x.view(batch, seq, count, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv_proj(x)
        q = self._heads(q, self.local_heads)
        k, v = self._heads(k, self.local_kv_heads), self._heads(v, self.local_kv_heads)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        group = self.local_heads // self.local_kv_heads
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        out = self.core_attn(q, k, v)  # [batch, heads, seq, dim]
        if self.sequence_parallel:
            out = out.permute(2, 0, 1, 3).reshape(out.shape[2], out.shape[0], -1)
        else:
            out = out.transpose(1, 2).reshape(out.shape[0], out.shape[2], -1)
        return self.o_proj(out)


class MLP(nn.Module):
    def __init__(self, model: ModelConfig, *, sequence_parallel: bool, dtype: torch.dtype):
        super().__init__()
        self.gate_up_proj = ColumnParallelLinear(model.hidden_size, 2 * model.intermediate_size, stride=2, bias=False,
                                                 gather_output=False, init_method=_init_normal,
                                                 sequence_parallel_enabled=sequence_parallel, dtype=dtype)
        self.down_proj = RowParallelLinear(model.intermediate_size, model.hidden_size, bias=False,
                                           input_is_parallel=True, init_method=_init_normal,
                                           sequence_parallel_enabled=sequence_parallel, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(nn.functional.silu(gate) * up)


class DecoderLayer(nn.Module):
    """One transformer block: the unit of full activation recompute and of pipeline cuts."""

    def __init__(self, model: ModelConfig, **kwargs):
        super().__init__()
        sp, dtype = kwargs["sequence_parallel"], kwargs["dtype"]
        self.input_layernorm = RMSNorm(model.hidden_size, model.rms_norm_eps, sp, dtype)
        self.self_attn = Attention(model, **kwargs)
        self.post_attention_layernorm = RMSNorm(model.hidden_size, model.rms_norm_eps, sp, dtype)
        self.mlp = MLP(model, sequence_parallel=sp, dtype=dtype)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class Decoder(nn.Module):
    def __init__(self, model: ModelConfig, **kwargs):
        super().__init__()
        sp, dtype = kwargs["sequence_parallel"], kwargs["dtype"]
        self.embed_tokens = ParallelEmbedding(model.vocab_size, model.hidden_size, init_method=_init_normal,
                                              sequence_parallel_enabled=sp, dtype=dtype)
        self.layers = nn.ModuleList([DecoderLayer(model, **kwargs) for _ in range(model.num_layers)])
        self.norm = RMSNorm(model.hidden_size, model.rms_norm_eps, sp, dtype)


class CausalLM(nn.Module):
    """Llama / Mistral for training.

    forward(input_ids, labels) -> (summed loss over the labels that are not IGNORE, times loss_scale;
    vocab-parallel logits). A sum, not a mean, so that the backend weighs every target token of the
    global batch the same (train/loss.py); loss_scale is the backend's per-step factor (NxD's pipeline
    backpropagates the loss the model returns, so the factor has to be applied inside).
    """

    def __init__(self, model: ModelConfig, *, kv_replicator: int, fused_qkv: bool, sequence_parallel: bool,
                 dtype: torch.dtype):
        super().__init__()
        self.spec = model
        self.inv_freq, self.rope_scaling = rope_frequencies(model)
        self.sequence_parallel = sequence_parallel
        self.loss_scale = 1.0
        """Factor on the returned summed loss (set by the backend before each step)."""
        kwargs = dict(kv_replicator=kv_replicator, fused_qkv=fused_qkv, sequence_parallel=sequence_parallel,
                      dtype=dtype)
        self.model = Decoder(model, **kwargs)
        self.lm_head = ColumnParallelLinear(model.hidden_size, model.vocab_size, bias=False, gather_output=False,
                                            init_method=_init_normal, sequence_parallel_enabled=sequence_parallel,
                                            dtype=dtype)

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None):
        x = self.model.embed_tokens(input_ids)
        cos, sin = rotary_tables(input_ids.shape[1], self.inv_freq, self.rope_scaling, input_ids.device)
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)
        for layer in self.model.layers:
            x = layer(x, cos, sin)
        logits = self.lm_head(self.model.norm(x))
        if self.sequence_parallel:
            logits = logits.transpose(0, 1).contiguous()  # [batch, seq, vocab / tp]
        logits = logits.float()
        if labels is None:
            return logits
        shift_logits = logits[:, :-1, :].contiguous().view(-1, logits.shape[-1])
        targets = labels[:, 1:].contiguous().view(-1)
        learned = targets != IGNORE  # SFT prompts and padding carry IGNORE, as in transformers' labels
        per_token = parallel_cross_entropy(shift_logits, targets.masked_fill(~learned, 0))
        return (per_token * learned).sum() * self.loss_scale, logits


def build_model(model: ModelConfig, *, kv_replicator: int, fused_qkv: bool, sequence_parallel: bool,
                dtype: torch.dtype) -> CausalLM:
    """The NxD model of a job's model spec (Llama, or Mistral with its sliding window)."""
    return CausalLM(model, kv_replicator=kv_replicator, fused_qkv=fused_qkv, sequence_parallel=sequence_parallel,
                    dtype=dtype)
