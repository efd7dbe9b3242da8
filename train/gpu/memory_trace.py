"""One training step of the job's real model, traced on fake tensors: the per-rank peak memory without a GPU.

plan.memory=traced runs this as a program of its own (main(), started by llm_launch.launcher.memory_trace).
It builds what the GPU engine builds for rank 0 - the transformers model, its stage, tensor
parallelism, activation checkpointing and FSDP2 - with the engine's own code
(llm_launch.train.gpu.engine.Engine) on a fake process group of the job's world size, under torch's
FakeTensorMode, so no memory is allocated and no GPU is needed. Then it runs one optimizer step - the
engine's micro-batches, gradient clipping and AdamW - under torch's FSDPMemTracker
(torch.distributed._tools), which records the peak by category.

What it takes (torch 2.13):
* Fake tensors on the cpu device: fake cuda tensors need a CUDA build. SDPA on fake cpu tensors
  saves the same tensors for backward as the flash kernel does on CUDA.
* Weights are built on the meta device and given fake storage with to_empty (the engine's
  path for pretrained weights); its random-init path cannot run under fake mode.
* Gradient clipping reads the norm as a Python float, which a fake tensor cannot give: the
  trace clips with the norm left as a tensor (llm_launch.train.gpu.grad_clip.global_grad_norm).
* One warm-up clip and optimizer step runs before tracking, so the optimizer state exists (as
  in every step after the first) and DTensor's first-call sharding propagation is not counted.
* Two micro-batches reach the peak of any longer accumulation, so at most two are traced.
* Plain DDP (parallelism.data_parallel=ddp without tp or pp) is traced without its wrapper, whose C++
  reducer needs real tensors. What DDP adds is its gradient buckets: with gradient_as_bucket_view
  the gradients are views of buckets that live from the wrapper's construction on, so the trace
  keeps every gradient allocated across steps (zero_grad without set_to_none), as the buckets are.
Pipeline parallelism is not traced (its schedule exchanges shapes with the other stages, which
a fake process group does not answer); validation says so.
Docs: https://pytorch.org/docs/stable/torch.compiler_fake_tensor.html
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.plan import make_plan

TRACED_MICROBATCHES = 2


@contextlib.contextmanager
def fake_process_group(world_size: int):
    """A process group of world_size ranks, this process rank 0, whose collectives do nothing."""
    from torch.testing._internal.distributed.fake_pg import FakeStore

    if dist.is_initialized():
        raise RuntimeError("a process group already exists in this process; trace in a fresh one")
    dist.init_process_group("fake", store=FakeStore(), rank=0, world_size=world_size)
    try:
        yield
    finally:
        dist.destroy_process_group()


def _category_bytes(snapshot: dict) -> dict[str, float]:
    """FSDPMemTracker's or MemTracker's peak snapshot of one device, folded into the plan's categories."""
    folded = {"parameters": 0.0, "gradients": 0.0, "optimizer": 0.0, "activations": 0.0, "temporaries": 0.0}
    names = {"Sharded Param": "parameters", "Unsharded Param": "parameters", "Parameter": "parameters",
             "Buffer": "parameters", "Sharded Grad": "gradients", "Unsharded Grad": "gradients",
             "Gradient": "gradients", "OptState": "optimizer", "Optstate": "optimizer", "Activation": "activations",
             "Inputs": "activations", "Temp": "temporaries", "All Gather": "temporaries",
             "Reduce Scatter": "temporaries", "Other": "temporaries"}
    for key, value in snapshot.items():
        name = getattr(key, "value", key)
        if name in names:
            folded[names[name]] += value
    return folded


def _quiet(_: str) -> None:
    pass


def trace_step(job: JobConfig, progress: Callable[[str], None] = _quiet) -> dict[str, float]:
    """Peak bytes of rank 0 over one optimizer step, by category (parameters ... temporaries) and in total.
    progress(line) hears of each phase as it starts (a 70B trace takes minutes)."""
    from llm_launch.launcher.devices import native_neuron
    from llm_launch.train.devices import neuron_on_cpu
    from llm_launch.train.gpu.engine import Engine
    from llm_launch.train.gpu.grad_clip import clip_gradients_with_norm, global_grad_norm
    from llm_launch.train.gpu.mesh import job_mesh
    from llm_launch.train.gpu.optimizer import build_optimizer
    from llm_launch.train.gpu.parallelize import wraps_ddp
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed._tools.fsdp2_mem_tracker import FSDPMemTracker
    from torch.distributed._tools.mem_tracker import MemTracker

    plan = make_plan(job)
    os.environ.setdefault("LOCAL_RANK", "0")
    with fake_process_group(plan.world_size):
        ctx = job_mesh(job, plan, torch.device("cpu"), neuron_on_cpu() if native_neuron(job) else None)
        # Built and parallelised on the meta device (DeviceMesh needs real index tensors), then given fake storage.
        # Never wrapped in DDP (its reducer needs real tensors); a DDP job's buckets are stood in for below.
        ddp = wraps_ddp(job.parallelism, ctx)
        progress(f"building and parallelising {job.model.name} on the meta device")
        engine = Engine(job, ctx, pipeline_microbatches=plan.pipeline_microbatches, init_weights=False,
                        replicate=False)
        with FakeTensorMode(allow_non_fake_inputs=True):  # the meta-built parameters become fake on to_empty
            progress("giving the parameters fake storage; warm-up optimizer step (outside the trace)")
            engine.materialise(job)
            params = engine.parameters()
            optimizer = build_optimizer(params, job.training.optimizer, fused=ctx.kind.fused_adamw)
            clip = job.training.optimizer.grad_clip

            def optimizer_step() -> None:
                norm = global_grad_norm(params, ctx.mesh.get_group("pp"))
                if clip > 0:
                    clip_gradients_with_norm(params, clip, norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=not ddp)  # DDP's bucket views stay allocated

            for param in params:  # warm-up: optimizer state and DTensor propagation caches, outside the trace
                param.grad = torch.zeros_like(param)
            optimizer_step()

            rows, seq = job.training.micro_batch_size, job.training.seq_len
            ids = torch.zeros((rows, seq), dtype=torch.long)
            count = min(TRACED_MICROBATCHES, plan.gradient_accumulation)
            module = engine.modules[0]
            fsdp = hasattr(module, "set_requires_gradient_sync")
            tracker = FSDPMemTracker(module, optimizer) if fsdp else MemTracker()
            if fsdp:
                tracker.track_inputs((ids,))
            else:
                tracker.track_external(module, optimizer)
            scale = 1.0 / (rows * seq * plan.gradient_accumulation)
            with tracker:
                for i in range(count):
                    progress(f"tracing micro-batch {i + 1} of {count} (forward and backward)")
                    tracker.reset_mod_stats()  # per micro-batch module stats; the peak is kept
                    engine.train_microbatch(ids, ids, scale, last=i == count - 1)
                progress("tracing the optimizer step")
                optimizer_step()
            snapshot = next(iter(tracker.get_tracker_snapshot("peak").values()))
    folded = _category_bytes(snapshot)
    folded["total"] = float(snapshot["Total"])
    return folded


def main(argv: list[str] | None = None) -> None:
    """python -m llm_launch.train.gpu.memory_trace --job job.yaml --out peak.json: the per-rank peak of one step,
    bytes by category and in total (what llm_launch.launcher.memory_trace turns into the plan's estimate)."""
    import argparse
    import json

    from llm_launch.launcher.jobfile import read_job, write_text_atomic

    parser = argparse.ArgumentParser(prog="python -m llm_launch.train.gpu.memory_trace",
                                     description="Trace one training step of a job on fake tensors (plan.memory=traced).")
    parser.add_argument("--job", required=True, help="resolved job.yaml written by llm-launch")
    parser.add_argument("--out", required=True, type=Path, help="where the peak bytes by category are written (JSON)")
    args = parser.parse_args(argv)
    started = time.monotonic()

    def progress(line: str) -> None:  # llm-launch's stdout is ours: each phase shows as it starts
        print(f"llm-launch: trace {time.monotonic() - started:6.1f} s: {line}", flush=True)

    peak = trace_step(read_job(args.job), progress)
    progress("done")
    write_text_atomic(args.out, json.dumps(peak) + "\n")


if __name__ == "__main__":
    main()
