"""Applies the job's parallel layout to the model's stages: TP, activation checkpointing, compile, DP.

Order follows torchtitan: tensor parallel, then recompute wrappers, then compile, then
FSDP, each per decoder layer. Model code never changes; only the stages are wrapped.
"""

from __future__ import annotations

import inspect

import torch
from llm_launch.launcher.config.schema import ParallelismConfig
from llm_launch.launcher.devices import DeviceKind
from llm_launch.train.devices import compile_options, ddp_device_ids
from llm_launch.train.gpu.mesh import Dist
from llm_launch.train.gpu.stage import CausalLMStage, retie_embeddings
from llm_launch.train.gpu.tensor_parallel import apply_tensor_parallel
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.nn.parallel import DistributedDataParallel


def apply_activation_checkpointing(stage: CausalLMStage, mode: str) -> None:
    """Recompute decoder layers in backward: every layer (full) or every other one (selective)."""
    if mode == "none":
        return
    layers = stage.model.layers
    for key in list(layers.keys()):
        if mode == "full" or int(key) % 2 == 0:
            layers[key] = checkpoint_wrapper(layers[key], preserve_rng_state=False)


def apply_compile(stage: CausalLMStage, kind: DeviceKind) -> None:
    """Compile each decoder layer (repeated blocks share one compiled graph) with the device row's backend and options:
    on Neuron fixed shapes (dynamic=False; the engine's rows are always seq_len long and its micro-batches always
    micro_batch_size rows) and fullgraph."""
    options = compile_options(kind)
    for layer in stage.model.layers.values():
        layer.compile(**options)


def _shard(stage: CausalLMStage, ctx: Dist, bf16: bool, data_parallel: str) -> None:
    """FSDP2 per decoder layer, then the stage's remaining parameters (embedding, norm, head).

    Parameters are freed after forward and gathered again for backward, except where backward
    needs them at once: the last layer (backward starts there), and under pipeline parallelism
    every layer (each micro-batch's forward and backward would gather them again), as torchtitan
    does (https://github.com/pytorch/torchtitan, its Llama parallelize; reshard_after_forward:
    https://pytorch.org/docs/stable/distributed.fsdp.fully_shard.html).
    """
    mesh = ctx.mesh["dp_replicate", "dp_shard"] if data_parallel in ("hsdp", "ddp") else ctx.mesh["dp_shard"]
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16 if bf16 else None, reduce_dtype=torch.float32)
    pipelined = ctx.pp_size > 1
    layers = list(stage.model.layers.values())
    for index, layer in enumerate(layers):
        fully_shard(layer, mesh=mesh, mp_policy=policy,
                    reshard_after_forward=not pipelined and index < len(layers) - 1)
    fully_shard(stage, mesh=mesh, mp_policy=policy, reshard_after_forward=not pipelined)


def uses_fsdp(par: ParallelismConfig, ctx: Dist) -> bool:
    """FSDP2 shards for fsdp/hsdp; it also replicates for ddp when TP or PP is on (DDP cannot take DTensors)."""
    if par.data_parallel in ("fsdp", "hsdp"):
        return True
    return par.data_parallel == "ddp" and ctx.dp_size > 1 and (ctx.tp_size > 1 or ctx.pp_size > 1)


def parallelize_stage(stage: CausalLMStage, par: ParallelismConfig, ctx: Dist, *, bf16: bool,
                      compile_layers: bool, tied: bool = False) -> None:
    """Apply the layout to one stage in place: TP, recompute, compile and FSDP (DDP comes after loading)."""
    if ctx.tp_size > 1:
        apply_tensor_parallel(stage, ctx.mesh["tp"], sequence_parallel=par.sequence_parallel)
        if tied:
            retie_embeddings(stage)
    apply_activation_checkpointing(stage, par.activation_checkpointing)
    if compile_layers:
        apply_compile(stage, ctx.kind)
    if uses_fsdp(par, ctx):
        _shard(stage, ctx, bf16, par.data_parallel)


def wraps_ddp(par: ParallelismConfig, ctx: Dist) -> bool:
    """Whether the stage trains inside torch's DistributedDataParallel (plain DDP over several replicas)."""
    return par.data_parallel == "ddp" and ctx.dp_size > 1 and not uses_fsdp(par, ctx)


def ddp_buffer_options() -> dict[str, bool]:
    """DDP's option that turns off the buffer broadcast before every forward. torch 2.13 deprecates
    broadcast_buffers (a FutureWarning from every rank) for forward_sync_buffers, which still syncs the buffers
    once at init (torch/nn/parallel/distributed.py, DistributedDataParallel.__init__); older torch has only
    broadcast_buffers."""
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters:
        return {"forward_sync_buffers": False}
    return {"broadcast_buffers": False}


def replicate_stage(stage: CausalLMStage, par: ParallelismConfig, ctx: Dist) -> torch.nn.Module:
    """The module to train: the stage, or DDP around it. DDP copies rank 0's weights to the others when
    it is built, so it wraps the stage only once the weights are loaded."""
    if wraps_ddp(par, ctx):
        device_ids = ddp_device_ids(ctx.device)
        # gradient_as_bucket_view: gradients live in the all-reduce buckets (no copy in and out each
        # step); broadcast_buffers off: the only buffers are rotary tables, the same on every rank,
        # and broadcasting them cost a collective before every forward.
        # https://pytorch.org/docs/stable/generated/torch.nn.parallel.DistributedDataParallel.html
        ddp = DistributedDataParallel(stage, device_ids=device_ids, process_group=ctx.dp_mesh.get_group(),
                                      gradient_as_bucket_view=True, **ddp_buffer_options())
        settle_ddp_buckets(ddp, ctx.device)
        return ddp
    return stage


def settle_ddp_buckets(ddp: DistributedDataParallel, device: torch.device) -> None:
    """Fix DDP's gradient buckets before the first step, so every step of every run reduces in the same ones.

    DDP all-reduces the first synchronised backward in one bucket of all gradients, records the order
    they became ready in, and rebuilds its buckets in that order before the next forward (torch's
    DistributedDataParallel._pre_forward and _BucketCapacityConfig.compute_bucket_size_limits,
    https://github.com/pytorch/pytorch/blob/main/torch/nn/parallel/distributed.py). An element's
    position in its bucket decides the order in which the all-reduce sums the ranks' values (ring
    algorithms start each chunk at another rank), which above two ranks changes the last bit. Left
    alone, a fresh run's step 1 used the one-bucket layout and its later steps the rebuilt one, while a
    resumed run's first step used the one-bucket layout again: resume was not bit-exact above two
    ranks. One backward of a two-token sequence here (its gradients discarded) lets DDP record the
    order, so every real step, the first of a fresh or a resumed run included, uses the rebuilt buckets.
    """
    with torch.enable_grad():
        ddp(torch.zeros((1, 2), dtype=torch.long, device=device)).float().sum().backward()
    ddp.zero_grad(set_to_none=True)


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The stage under any DDP wrapper."""
    return module.module if isinstance(module, DistributedDataParallel) else module
