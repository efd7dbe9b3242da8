"""Parameter counts and FLOPs of a decoder-only Llama-style model, from its config alone.

Shared by the plan (estimates before a job runs) and the training loop (MFU while it runs),
so both use one formula. No torch import.
"""

from __future__ import annotations

from dataclasses import dataclass

from llm_launch.launcher.config.schema import ModelConfig


def head_dim(model: ModelConfig) -> int:
    """Per-head width: the explicit head_dim, else hidden_size / num_attention_heads."""
    return model.head_dim or model.hidden_size // model.num_attention_heads


@dataclass(frozen=True)
class ParamCounts:
    """Parameter counts of the model's parts."""

    embedding: int
    """Input embedding (vocab x hidden)."""
    per_layer: int
    """One decoder layer: attention, MLP and its two norms."""
    final_norm: int
    """The norm before the output projection."""
    lm_head: int
    """Output projection; 0 when tied to the embedding."""
    num_layers: int
    """Decoder layers."""

    @property
    def total(self) -> int:
        """Every parameter of the model."""
        return self.embedding + self.per_layer * self.num_layers + self.final_norm + self.lm_head

    @property
    def non_embedding(self) -> int:
        """All but the input embedding: the N of the 6N FLOPs rule (the output projection stays in)."""
        return self.total - self.embedding


def qkv_bias(model: ModelConfig) -> bool:
    """Whether q, k and v have biases: always in Qwen2 (and 2.5), where config.json says attention_bias otherwise."""
    return model.family == "qwen2" or model.attention_bias


def o_bias(model: ModelConfig) -> bool:
    """Whether the attention output projection has a bias (attention_bias of Llama and Qwen3; never in Qwen2)."""
    return model.attention_bias and model.family != "qwen2"


def qk_norm(model: ModelConfig) -> bool:
    """Whether each query and key head is RMS-normed over head_dim before RoPE (Qwen3)."""
    return model.family == "qwen3"


def param_counts(model: ModelConfig) -> ParamCounts:
    """Count parameters the way transformers' Llama, Mistral, Qwen2 and Qwen3 classes lay them out."""
    hidden, q_width = model.hidden_size, model.num_attention_heads * head_dim(model)
    kv_width = model.num_key_value_heads * head_dim(model)
    attention = hidden * q_width + 2 * hidden * kv_width + q_width * hidden
    attention += (q_width + 2 * kv_width) * qkv_bias(model) + hidden * o_bias(model) + 2 * head_dim(model) * qk_norm(model)
    mlp = 3 * hidden * model.intermediate_size
    per_layer = attention + mlp + 2 * hidden
    embedding = model.vocab_size * hidden
    lm_head = 0 if model.tie_word_embeddings else model.vocab_size * hidden
    return ParamCounts(embedding, per_layer, hidden, lm_head, model.num_layers)


def lora_params_per_layer(model: ModelConfig, rank: int, targets: tuple[str, ...] | list[str]) -> int:
    """Adapter parameters LoRA adds to one decoder layer: r x (in + out) for each target linear layer
    (peft's lora_A is r x in, lora_B is out x r; https://huggingface.co/docs/peft/package_reference/lora)."""
    hidden, q_width = model.hidden_size, model.num_attention_heads * head_dim(model)
    kv_width, inter = model.num_key_value_heads * head_dim(model), model.intermediate_size
    shapes = {"q_proj": (hidden, q_width), "k_proj": (hidden, kv_width), "v_proj": (hidden, kv_width),
              "o_proj": (q_width, hidden), "gate_proj": (hidden, inter), "up_proj": (hidden, inter),
              "down_proj": (inter, hidden)}
    return sum(rank * sum(shapes[name]) for name in targets)


def flops_per_token(model: ModelConfig, seq_len: int) -> float:
    """Training FLOPs per token: 6 N + 12 L H Q T.

    N is the parameter count without the input embedding, L layers, H attention heads,
    Q head dim and T the sequence length. The first term is the forward and backward
    matmuls (2 + 4 FLOPs per parameter per token); the second is attention's score and
    value matmuls, forward and backward, with no discount for the causal mask and no
    recompute counted. This is torchtitan's formula (get_num_flop_per_token,
    https://github.com/pytorch/torchtitan), so our MFU compares directly with its published numbers.
    """
    counts = param_counts(model)
    attention = 12 * model.num_layers * model.num_attention_heads * head_dim(model) * seq_len
    return 6 * counts.non_embedding + attention


def mfu(tokens_per_second_per_device: float, flops_token: float, peak_tflops: float) -> float:
    """Model FLOPs utilisation of one device: achieved model FLOP/s over its bf16 peak."""
    return tokens_per_second_per_device * flops_token / (peak_tflops * 1e12)
