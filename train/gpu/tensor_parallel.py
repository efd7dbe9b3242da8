"""Tensor parallelism (and sequence parallelism) over the tp mesh dimension, applied to a CausalLMStage.

Attention: q, k and v are split by heads (colwise), o joins them (rowwise); MLP: gate and up
colwise, down rowwise. Each rank then holds heads / tp query heads and kv_heads / tp KV
heads; transformers' attention reshapes with -1 heads, so the layer code runs unchanged.

With sequence parallelism the residual stream between blocks is split along the sequence:
norms run on their slice, the attention and MLP inputs are gathered, and the rowwise
outputs are reduce-scattered back to sequence slices. The embedding is split by vocabulary
and the output projection by vocabulary, gathered back to full logits for the loss.
"""

from __future__ import annotations

from llm_launch.train.gpu.stage import CausalLMStage
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import Replicate, Shard
from torch.distributed.tensor.parallel import (
    ColwiseParallel,
    PrepareModuleInput,
    RowwiseParallel,
    SequenceParallel,
    parallelize_module,
)


def _layer_plan(sequence_parallel: bool) -> dict:
    rowwise_out = Shard(1) if sequence_parallel else Replicate()
    plan = {
        "self_attn.q_proj": ColwiseParallel(),
        "self_attn.k_proj": ColwiseParallel(),
        "self_attn.v_proj": ColwiseParallel(),
        "self_attn.o_proj": RowwiseParallel(output_layouts=rowwise_out),
        "mlp.gate_proj": ColwiseParallel(),
        "mlp.up_proj": ColwiseParallel(),
        "mlp.down_proj": RowwiseParallel(output_layouts=rowwise_out),
    }
    if sequence_parallel:
        plan.update({
            "input_layernorm": SequenceParallel(),
            "post_attention_layernorm": SequenceParallel(),
            "self_attn": PrepareModuleInput(input_kwarg_layouts={"hidden_states": Shard(1)},
                                            desired_input_kwarg_layouts={"hidden_states": Replicate()}),
            "mlp": PrepareModuleInput(input_layouts=(Shard(1),), desired_input_layouts=(Replicate(),)),
        })
    return plan


def apply_tensor_parallel(stage: CausalLMStage, tp_mesh: DeviceMesh, *, sequence_parallel: bool) -> None:
    """Shard the stage's layers (and embedding and head, under sequence parallelism) over tp_mesh."""
    layer_plan = _layer_plan(sequence_parallel)
    for layer in stage.model.layers.values():
        parallelize_module(layer, tp_mesh, layer_plan)
    if not sequence_parallel:
        return
    stage.sequence_shards = tp_mesh.size()
    outer = {}
    if stage.is_first:
        outer["model.embed_tokens"] = RowwiseParallel(input_layouts=Replicate(), output_layouts=Shard(1))
    if stage.is_last:
        outer["model.norm"] = SequenceParallel()
        outer["lm_head"] = ColwiseParallel(input_layouts=Shard(1), output_layouts=Replicate())
    if outer:
        parallelize_module(stage, tp_mesh, outer)
