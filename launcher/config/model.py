"""The model section: architecture of the model to train, as in its Hugging Face config.json."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llm_launch.launcher.config.checks import Checks, Section
from llm_launch.launcher.config.choices import choices
from omegaconf import MISSING

ModelFamily = choices("ModelFamily", "llama", "mistral", "qwen2", "qwen3")
"""config.json model_type values the engine builds: Llama 2/3/3.x, Mistral, Qwen2/Qwen2.5 (q/k/v biases) and Qwen3
(QK-norm: a per-head RMSNorm of q and k)."""


@dataclass
class ModelConfig(Section):
    """Architecture of the model to train, as in its Hugging Face config.json."""

    name: str = MISSING
    """Short name used in job names, logs and the plan, e.g. llama3_8b."""
    family: ModelFamily = ModelFamily.llama
    """Architecture family (config.json model_type); selects the transformers model class: llama, mistral,
    qwen2 (Qwen2 and Qwen2.5: biases on the q, k and v projections) or qwen3 (QK-norm: an RMSNorm over head_dim
    of every query and key head)."""
    source: str = ""
    """Where the numbers below come from (the published config.json), for the reader."""
    vocab_size: int = MISSING
    """Number of token embeddings (config.json vocab_size)."""
    hidden_size: int = MISSING
    """Width of the residual stream (config.json hidden_size)."""
    intermediate_size: int = MISSING
    """Width of the SwiGLU MLP (config.json intermediate_size)."""
    num_layers: int = MISSING
    """Decoder layers (config.json num_hidden_layers)."""
    num_attention_heads: int = MISSING
    """Query heads (config.json num_attention_heads)."""
    num_key_value_heads: int = MISSING
    """Key/value heads; fewer than query heads means grouped-query attention."""
    head_dim: int | None = None
    """Per-head width; None means hidden_size // num_attention_heads."""
    max_position_embeddings: int = MISSING
    """Longest sequence the position embedding is trained for; seq_len must not exceed it."""
    rope_theta: float = 10000.0
    """RoPE base frequency."""
    rms_norm_eps: float = 1e-5
    """Epsilon of the RMS norms."""
    tie_word_embeddings: bool = False
    """Whether the output projection shares the input embedding's weights."""
    rope_scaling: dict[str, Any] | None = None
    """RoPE scaling as config.json gives it (rope_scaling, or rope_parameters beyond rope_theta in files written by
    transformers 5), e.g. Llama 3.1's {rope_type: llama3, factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0,
    original_max_position_embeddings: 8192}; None for plain RoPE."""
    attention_bias: bool = False
    """config.json attention_bias: biases on the q, k, v and o projections (Llama, Qwen3). Qwen2 has biases on q,
    k and v by its architecture, whatever this says (its config.json has no such key)."""
    sliding_window: int | None = None
    """Sliding attention window (Mistral 7B v0.1 uses 4096); None for full attention."""
    from_pretrained: bool = False
    """Take every architecture field above from pretrained_path's config.json (model=pretrained sets it); a field
    also set on the command line is checked against the file instead."""
    pretrained_path: str | None = None
    """Hugging Face checkpoint folder to continue from (on Trainium: the NxD folder llm-launch-convert hf-to-nxd
    wrote, which keeps the source's config.json); None starts from random weights. Its config.json is the truth:
    the fields above are filled from it where the model group leaves them (model=pretrained) and a field that
    differs from it is refused (llm_launch.launcher.pretrained_config)."""

    def own_problems(self, checks: Checks) -> None:
        checks.at_least(1, vocab_size=self.vocab_size, hidden_size=self.hidden_size,
                        intermediate_size=self.intermediate_size, num_layers=self.num_layers,
                        num_attention_heads=self.num_attention_heads, num_key_value_heads=self.num_key_value_heads,
                        head_dim=self.head_dim, max_position_embeddings=self.max_position_embeddings,
                        sliding_window=self.sliding_window)
        checks.positive(rope_theta=self.rope_theta, rms_norm_eps=self.rms_norm_eps)
        if self.num_key_value_heads >= 1 and self.num_attention_heads % self.num_key_value_heads:
            checks.error("num_key_value_heads", f"{self.num_key_value_heads} KV heads do not divide "
                         f"{self.num_attention_heads} query heads")
        if self.head_dim is None and self.num_attention_heads >= 1 and self.hidden_size % self.num_attention_heads:
            checks.error("hidden_size", f"{self.hidden_size} does not divide by the {self.num_attention_heads} "
                         "attention heads, so heads have no whole width; set model.head_dim or change either")
