"""The memory estimate's activations of one decoder layer, term by term, against what the layer saves for backward.

One transformers decoder layer, built as the engine builds the model (llm_launch.train.model.build_model: the job's
config, SDPA) and cast to the compute precision as FSDP2's mixed precision casts it, runs one forward on a small real
batch under torch.autograd.graph.saved_tensors_hooks, which sees every tensor autograd keeps for backward
(https://pytorch.org/docs/stable/autograd.html#hooks-for-saved-tensors). Distinct storages, less the parameters and
the shared rotary tables, are the layer's saved bytes; launcher/memory.py's activation_bytes_per_token_layer must
give the same bytes per token, for GQA and MHA shapes and both precisions, and with full recompute (only the
layer's input kept).
"""

from __future__ import annotations

import pytest
import torch
from llm_launch.launcher.memory import activation_bytes_per_token_layer
from llm_launch.launcher.topology import layout_of
from llm_launch.train.model import build_model
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

ROWS, SEQ = 2, 96
SHAPES = {
    "gqa": ("model.hidden_size=256", "model.intermediate_size=704", "model.num_attention_heads=8",
            "model.num_key_value_heads=2"),
    "mha": ("model.hidden_size=192", "model.intermediate_size=512", "model.num_attention_heads=6",
            "model.num_key_value_heads=6"),
}


def saved_bytes_per_token(job, dtype: torch.dtype, recompute: bool) -> float:
    """Bytes one decoder layer keeps for backward after its forward, per token."""
    model = build_model(job.model, seed=0).to(dtype)
    layer, rotary = model.model.layers[0], model.model.rotary_emb
    if recompute:
        layer = checkpoint_wrapper(layer, preserve_rng_state=False)
    hidden = torch.randn(ROWS, SEQ, job.model.hidden_size, dtype=dtype, requires_grad=True)
    residual_input = hidden * 1  # the layer's input is the previous layer's output, not a leaf
    positions = torch.arange(SEQ).unsqueeze(0)
    cos_sin = rotary(residual_input, positions)
    shared = {t.untyped_storage().data_ptr() for t in (*layer.parameters(), *cos_sin, positions)}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in shared:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        layer(residual_input, position_ids=positions, position_embeddings=cos_sin)
    return sum(saved.values()) / (ROWS * SEQ)


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_one_layer_saves_what_the_estimate_counts(job_for, shape, precision):
    job = job_for(*SHAPES[shape], f"training.seq_len={SEQ}", f"training.precision={precision}")
    dtype, compute_bytes = (torch.bfloat16, 2) if precision == "bf16" else (torch.float32, 4)
    plain, layer_input = activation_bytes_per_token_layer(job.model, layout_of(job), compute_bytes)
    assert saved_bytes_per_token(job, dtype, recompute=False) == pytest.approx(plain, abs=1e-6)
    assert saved_bytes_per_token(job, dtype, recompute=True) == pytest.approx(layer_input, abs=1e-6)
