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
* Pipeline parallelism: the schedule's own run exchanges shapes and activations with the other stages,
  which a fake process group does not answer, so the trace replays this rank's part of the schedule
  instead: the actions torch's schedule lists for the rank (its pipeline_order: forwards, full
  backwards and the gradient reduction, in order, for every micro-batch of the step), each run on the
  stage's module as torch.distributed.pipelining's PipelineStage runs it (a stage's input arrives as a
  fresh tensor that requires grad, its output waits in the forward cache until its backward, whose
  output gradient arrives as a fresh tensor; the stage's own backward_maybe_with_nosync and
  perform_reduce_grad keep FSDP's gradients unsharded until the step's reduction). So a stage holds
  exactly the micro-batches the schedule keeps in flight on it. Two ranks are traced: the first
  pipeline rank (the embedding, the most micro-batches in flight) and the last (the output projection
  and the logits); the plan takes the larger peak.
Docs: https://pytorch.org/docs/stable/torch.compiler_fake_tensor.html
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.jobfile import JOB_FILE, read_job, write_job, write_text_atomic
from llm_launch.launcher.plan import make_plan

TRACED_MICROBATCHES = 2
FORWARD, FULL_BACKWARD, REDUCE_GRAD = "forward", "backward", "reduce gradients"
"""The pipeline schedule actions the trace replays."""


@contextlib.contextmanager
def fake_process_group(world_size: int, rank: int = 0):
    """A process group of world_size ranks, this process the given rank, whose collectives do nothing."""
    from torch.testing._internal.distributed.fake_pg import FakeStore

    if dist.is_initialized():
        raise RuntimeError("a process group already exists in this process; trace in a fresh one")
    dist.init_process_group("fake", store=FakeStore(), rank=rank, world_size=world_size)
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
    """Peak bytes of one rank over one optimizer step, by category (parameters ... temporaries) and in total: rank 0,
    or under pipeline parallelism the larger of the first and the last pipeline rank (pipeline_rank says which).
    progress(line) hears of each phase as it starts (a 70B trace takes minutes)."""
    plan = make_plan(job)
    if plan.pp == 1:
        return _trace_rank(job, 0, progress)
    ranks_per_stage = plan.world_size // plan.pp  # the mesh is (pp, dp_replicate, dp_shard, tp), pp outermost
    peaks = []
    # Each rank in a process of its own: DTensor caches sharding plans by meshes that compare equal across process
    # groups, so a second trace in one process would run collectives of the first one's destroyed group.
    peaks = []
    with tempfile.TemporaryDirectory(prefix="llm-launch-trace-") as tmp:
        job_yaml = write_job(job, Path(tmp) / JOB_FILE)
        for pp_rank in (0, plan.pp - 1):
            out = Path(tmp) / f"peak-{pp_rank}.json"
            command = [sys.executable, "-P", "-m", __spec__.name, "--job", str(job_yaml), "--out", str(out),
                       "--rank", str(pp_rank * ranks_per_stage)]
            quiet = progress is _quiet
            if quiet:
                command.append("--quiet")
            elif isinstance(progress, Progress):  # one clock for the whole trace
                command += ["--since", repr(progress.started)]
            done = subprocess.run(command, check=False,
                                  capture_output=quiet, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"tracing pipeline rank {pp_rank} failed (exit {done.returncode}): "
                                   f"{(done.stderr or '')[-4000:]}")
            peaks.append({**json.loads(out.read_text(encoding="utf-8")), "pipeline_rank": float(pp_rank)})
    return max(peaks, key=lambda peak: peak["total"])


def _trace_rank(job: JobConfig, rank: int, progress: Callable[[str], None], prefix: str = "") -> dict[str, float]:
    """Peak bytes of one rank over one optimizer step, by category and in total."""
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
    with fake_process_group(plan.world_size, rank):
        ctx = job_mesh(job, plan, torch.device("cpu"), neuron_on_cpu() if native_neuron(job) else None)
        # Built and parallelised on the meta device (DeviceMesh needs real index tensors), then given fake storage.
        # Never wrapped in DDP (its reducer needs real tensors); a DDP job's buckets are stood in for below.
        ddp = wraps_ddp(job.parallelism, ctx)
        progress(f"{prefix}building and parallelising {job.model.name} on the meta device")
        engine = Engine(job, ctx, pipeline_microbatches=traced_pipeline_microbatches(job, plan), init_weights=False,
                        replicate=False)
        with FakeTensorMode(allow_non_fake_inputs=True):  # the meta-built parameters become fake on to_empty
            progress(f"{prefix}giving the parameters fake storage; warm-up optimizer step (outside the trace)")
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
            modules = engine.modules
            fsdp = hasattr(modules[0], "set_requires_gradient_sync")
            tracker = FSDPMemTracker(modules[0], optimizer) if fsdp else MemTracker()
            if fsdp:
                # FSDPMemTracker instruments the FSDP modules under its root; an interleaved rank runs several stages
                tracker._root_mod = torch.nn.ModuleList(modules)
                tracker.track_inputs((ids,))
            else:
                tracker.track_external(*modules, optimizer)
            with tracker:
                if engine.pipelined:
                    _replay_pipeline(engine, ctx, job, plan, tracker, progress, prefix)
                else:
                    count = min(TRACED_MICROBATCHES, plan.gradient_accumulation)
                    scale = 1.0 / (rows * seq * plan.gradient_accumulation)
                    for i in range(count):
                        progress(f"{prefix}tracing micro-batch {i + 1} of {count} (forward and backward)")
                        tracker.reset_mod_stats()  # per micro-batch module stats; the peak is kept
                        engine.train_microbatch(ids, ids, scale, last=i == count - 1)
                progress(f"{prefix}tracing the optimizer step")
                optimizer_step()
            snapshot = next(iter(tracker.get_tracker_snapshot("peak").values()))
    folded = _category_bytes(snapshot)
    folded["total"] = float(snapshot["Total"])
    return folded


def _replay_pipeline(engine, ctx, job: JobConfig, plan, tracker, progress: Callable[[str], None], prefix: str) -> None:
    """This rank's actions of the step's pipeline schedule, run as torch's PipelineStage runs them (module docstring)."""
    from torch.distributed.pipelining import PipelineStage

    num_stages = ctx.pp_size * job.parallelism.virtual_pp
    stages = {index: PipelineStage(module, index, num_stages, ctx.device, group=ctx.mesh.get_group("pp"))
              for module, index in zip(engine.modules, engine.stage_ids, strict=True)}
    microbatches = traced_pipeline_microbatches(job, plan)
    actions = _rank_actions(engine.schedule, ctx.pp_rank, engine.stage_ids[0], ctx.pp_size, microbatches)
    rows = job.training.micro_batch_size * plan.gradient_accumulation // plan.pipeline_microbatches
    seq = job.training.seq_len
    engine.loss.scale = 1.0 / (rows * seq * plan.pipeline_microbatches)
    dtype = torch.bfloat16 if engine.bf16 else torch.float32
    cache: dict[tuple[int, int], tuple[torch.Tensor, list[torch.Tensor]]] = {}
    progress(f"{prefix}tracing {sum(kind == FORWARD for kind, _, _ in actions)} forwards and their backwards of "
             f"{microbatches} of the step's {plan.pipeline_microbatches} micro-batches in the "
             f"{job.parallelism.pp_schedule} schedule's order")
    with engine.compute_precision():
        for kind, index, microbatch in actions:
            stage, key = stages[index], (index, microbatch)
            if kind == FORWARD:
                module = stage.submod
                for part in module.modules():  # the tracker's module stats take one forward each; the peak is kept
                    tracker.memory_tracking.pop(part, None)
                if stage.is_first:
                    inputs = [torch.zeros((rows, seq), dtype=torch.long)]
                else:  # the previous stage's activations, received into a buffer that requires grad
                    shards = getattr(module, "sequence_shards", 1)
                    inputs = [torch.empty((rows, seq // shards, job.model.hidden_size), dtype=dtype,
                                          requires_grad=True)]
                output = module(*inputs)
                if stage.is_last:
                    output = engine.loss(output, torch.zeros((rows, seq), dtype=torch.long))
                cache[key] = (output, inputs)
            elif kind == FULL_BACKWARD:
                output, inputs = cache.pop(key)
                grads = None if stage.is_last else (torch.empty_like(output),)  # from the next stage
                stage.backward_maybe_with_nosync("full", {"stage_output": output if stage.is_last else (output,),
                                                          "output_grads": grads, "input_values": inputs})
            else:
                stage.perform_reduce_grad(1)


def traced_pipeline_microbatches(job: JobConfig, plan) -> int:
    """Micro-batches the trace runs through the pipeline schedule: enough to reach its steady state with every
    gradient allocated, whose peak the rest of the step repeats. 1F1B: pp warm-up forwards, one backward and one
    more forward (pp + 1). Interleaved 1F1B: 3 pp, so that after its warm-up ((virtual_pp - 1) x pp + 2 (pp - 1)
    chunks) every local stage runs a backward with the pipeline full. GPipe holds every micro-batch: all of them."""
    count, pp = plan.pipeline_microbatches, plan.pp
    if job.parallelism.pp_schedule == "gpipe":
        return count
    if job.parallelism.pp_schedule == "interleaved_1f1b":
        return min(count, 3 * pp)
    return min(count, pp + 1)


def _rank_actions(schedule, pp_rank: int, stage_index: int, pp: int, microbatches: int) -> list[tuple]:
    """(computation, stage index, micro-batch) in the order this rank's schedule runs them in one step.

    Interleaved 1F1B runs its pipeline_order (torch's _PipelineScheduleRuntime). The single-stage schedules run loops
    of their own (their pipeline_order only describes them), so they are written out as those loops run
    (ScheduleGPipe._step_microbatches: every forward, then every backward; Schedule1F1B._step_microbatches:
    min(microbatches, pp - stage) forwards, then a backward before each further forward, then the remaining
    backwards), each followed by the gradient reduction
    (https://github.com/pytorch/pytorch/blob/main/torch/distributed/pipelining/schedules.py).
    """
    from torch.distributed.pipelining import ScheduleGPipe, ScheduleInterleaved1F1B
    from torch.distributed.pipelining.schedules import _ComputationType

    if isinstance(schedule, ScheduleInterleaved1F1B):
        names = {_ComputationType.FORWARD: FORWARD, _ComputationType.FULL_BACKWARD: FULL_BACKWARD,
                 _ComputationType.REDUCE_GRAD: REDUCE_GRAD}
        actions = [a for a in schedule.pipeline_order[pp_rank] if a is not None]
        unknown = {a.computation_type for a in actions} - set(names)
        if unknown:
            raise NotImplementedError(f"the memory trace does not replay {sorted(unknown)} actions of a schedule")
        return [(names[a.computation_type], a.stage_index, a.microbatch_index) for a in actions]
    forwards = [(FORWARD, stage_index, i) for i in range(microbatches)]
    backwards = [(FULL_BACKWARD, stage_index, i) for i in range(microbatches)]
    if isinstance(schedule, ScheduleGPipe):
        order = forwards + backwards
    else:
        warmup = min(microbatches, pp - stage_index)
        order = forwards[:warmup]
        for i in range(warmup, microbatches):
            order += [backwards[i - warmup], forwards[i]]
        order += backwards[microbatches - warmup:]
    return [*order, (REDUCE_GRAD, stage_index, 0)]


class Progress:
    """Prints each phase as it starts, with the seconds since the trace began (llm-launch's stdout is ours); a class,
    so that the processes tracing pipeline ranks can take it along."""

    def __init__(self, started: float):
        self.started = started

    def __call__(self, line: str) -> None:
        print(f"llm-launch: trace {time.monotonic() - self.started:6.1f} s: {line}", flush=True)


def main(argv: list[str] | None = None) -> None:
    """python -m llm_launch.train.gpu.memory_trace --job job.yaml --out peak.json: the per-rank peak of one step,
    bytes by category and in total (what llm_launch.launcher.memory_trace turns into the plan's estimate)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m llm_launch.train.gpu.memory_trace",
                                     description="Trace one training step of a job on fake tensors (plan.memory=traced).")
    parser.add_argument("--job", required=True, help="resolved job.yaml written by llm-launch")
    parser.add_argument("--out", required=True, type=Path, help="where the peak bytes by category are written (JSON)")
    parser.add_argument("--rank", type=int, default=None,
                        help="trace this global rank only (trace_step runs one such process per pipeline rank)")
    parser.add_argument("--quiet", action="store_true", help="print no progress")
    parser.add_argument("--since", type=float, default=None, help="the trace's start (time.monotonic()) for progress")
    args = parser.parse_args(argv)
    progress = _quiet if args.quiet else Progress(time.monotonic() if args.since is None else args.since)
    job = read_job(args.job)
    if args.rank is None:
        peak = trace_step(job, progress)
    else:
        pp_rank = args.rank // (make_plan(job).world_size // make_plan(job).pp)
        peak = _trace_rank(job, args.rank, progress, f"pipeline rank {pp_rank} of {make_plan(job).pp}: ")
    if args.rank is None:
        progress("done")
    write_text_atomic(args.out, json.dumps(peak) + "\n")


if __name__ == "__main__":
    main()
