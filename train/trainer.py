"""The training loop shared by the entrypoints: data, model, optimizer, steps, checkpoints, export.

Reads nothing but the resolved JobConfig, so what runs is what the launcher planned.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor

from launcher.config.schema import JobConfig
from launcher.jobfile import COMPLETE_MARKER, write_text_atomic
from launcher.plan import Plan, make_plan
from train.data.loader import Rows, StepBatches, eval_batches
from train.data.open import open_dataset
from train.distributed import shutdown
from train.errors import JobError
from train.gpu.checkpoint import agreed_latest, load_from, save_checkpoint
from train.gpu.checkpoint_store import open_store
from train.gpu.engine import Batch, Engine, global_sum
from train.gpu.export import export_hf_from_model
from train.gpu.grad_clip import clip_gradients
from train.gpu.mesh import Dist, init_distributed
from train.loss import next_token_targets, target_count
from train.metrics import MetricsLog, RunSummary, device_memory_gib, step_record
from train.schedule import build_scheduler
from train.signals import StopRequest

SUPPORTED_DATA_PARALLEL = ("ddp", "fsdp", "hsdp", "none")


def to_batches(rows: list[Rows]) -> list[Batch]:
    """(input ids, next-token targets) for each batch of rows."""
    return [(ids, next_token_targets(ids, mask)) for ids, mask in rows]


def regroup_for_pipeline(batches: list[Batch], rows_per_call: int) -> list[Batch]:
    """Validation batches re-cut to the rows one pipeline call takes (a remainder is left out)."""
    if not batches:
        return []
    ids = torch.cat([b[0] for b in batches])
    targets = torch.cat([b[1] for b in batches])
    usable = len(ids) - len(ids) % rows_per_call
    return [(ids[i:i + rows_per_call], targets[i:i + rows_per_call]) for i in range(0, usable, rows_per_call)]


def init_job_distributed(job: JobConfig, plan: Plan) -> Dist:
    """The process group and mesh the plan describes."""
    par = job.parallelism
    return init_distributed(dp=plan.dp, tp=par.tp, pp=par.pp, data_parallel=par.data_parallel,
                            num_nodes=plan.num_nodes)


def evaluate(engine: Engine, batches: list[Batch], ctx: Dist) -> float:
    """Mean validation loss per target token over all ranks' batches."""
    summed = engine.eval_loss(batches)  # every rank runs it: stages and tensor shards exchange activations
    if not engine.reports_loss():
        summed = summed * 0
    tokens = sum(target_count(t) for _, t in batches)
    total = global_sum(summed, ctx)
    count = global_sum(tokens, ctx, group=ctx.dp_mesh.get_group())
    return total / max(1.0, count)


class Trainer:
    """One run of a job: build, resume, step to max_steps (or a stop request), checkpoint, export."""

    def __init__(self, job: JobConfig):
        self.job, self.plan = job, make_plan(job)
        par = job.parallelism
        if par.data_parallel not in SUPPORTED_DATA_PARALLEL:
            raise JobError(f"parallelism.data_parallel={par.data_parallel} is a Trainium strategy; this "
                           "engine runs ddp, fsdp or hsdp")
        self.stop = StopRequest()
        self.ctx = init_job_distributed(job, self.plan)
        cfg, ctx = job.training, self.ctx
        self.out_dir = Path(job.output_dir)
        self.metrics = MetricsLog(self.out_dir, ctx.is_main)
        train_data = open_dataset(cfg.data.train_path, job, ctx.is_main)
        valid_data = open_dataset(cfg.data.valid_path, job, ctx.is_main)
        self.batches = StepBatches(train_data, seed=cfg.seed, global_batch=cfg.global_batch_size,
                                   micro_batch=cfg.micro_batch_size, dp_rank=ctx.dp_rank, dp_size=ctx.dp_size)
        self.engine = Engine(job, ctx, pipeline_microbatches=self.plan.pipeline_microbatches)
        if cfg.data.document_masking:
            self.engine.mask_documents(train_data.index["eos_id"])
        held_out = to_batches(eval_batches(valid_data, global_batch=cfg.global_batch_size,
                                           micro_batch=cfg.micro_batch_size, batches=cfg.eval_batches,
                                           dp_rank=ctx.dp_rank, dp_size=ctx.dp_size)) if valid_data else []
        if self.engine.pipelined:
            per_rank = cfg.global_batch_size // ctx.dp_size
            held_out = regroup_for_pipeline(held_out, per_rank)
        self.held_out = held_out
        opt = cfg.optimizer
        params = self.engine.parameters()
        # The fused kernel takes one kind of tensor at a time: plain tensors beside DTensors (tensor
        # parallel without FSDP) fall back to the per-tensor loop.
        uniform = len({isinstance(p, DTensor) for p in params}) == 1
        self.optimizer = torch.optim.AdamW(params, lr=opt.lr, betas=(opt.beta1, opt.beta2), eps=opt.eps,
                                           weight_decay=opt.weight_decay, fused=uniform or None,
                                           foreach=None if uniform else False)
        self.scheduler = build_scheduler(self.optimizer, cfg.schedule, cfg.max_steps)
        self.ckpt_root = open_store(cfg.checkpoint.dir, job.cluster.region)

    def _resume(self) -> int:
        latest = agreed_latest(self.ckpt_root) if self.job.training.checkpoint.resume else None
        if latest is None:
            return 0
        state = load_from(self.ckpt_root, latest, self.engine.checkpoint_module(), self.optimizer, self.scheduler,
                          rank=self.ctx.rank)
        if self.ctx.is_main:
            print(f"resumed from {self.ckpt_root.path(latest)} at step {state['step']}", flush=True)
        return state["step"]

    def _save(self, step: int, loss: float) -> None:
        cfg = self.job.training.checkpoint
        save_checkpoint(self.ckpt_root, step, self.engine.checkpoint_module(), self.optimizer, self.scheduler,
                        rank=self.ctx.rank, keep_last=cfg.keep_last, extra={"loss": loss})

    def _step(self, step: int) -> tuple[float, float, bool]:
        """One optimizer step; returns (mean loss per target token, gradient norm, whether any rank must stop)."""
        ctx = self.ctx
        rows = self.batches.micro_batches(step)
        batches = to_batches(rows)
        tokens = sum(target_count(t) for _, t in batches)
        if any(mask is not None for _, mask in rows):  # masked tokens differ between ranks
            tokens = global_sum(tokens, ctx, group=ctx.dp_mesh.get_group())
        else:
            tokens *= ctx.dp_size
        summed = self.engine.train_step(batches, scale=ctx.dp_size / max(1.0, tokens))
        grad_norm = clip_gradients(self.engine.parameters(), self.job.training.optimizer.grad_clip,
                                   ctx.mesh.get_group("pp") if ctx.pp_size > 1 else None)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        # One collective for both: the loss (counted once per replica) and the stop votes.
        reported = summed.detach().float() if self.engine.reports_loss() else torch.zeros((), device=ctx.device)
        both = torch.stack([reported.to(ctx.device), self.stop.vote(ctx.device)])
        dist.all_reduce(both)
        return float(both[0]) / max(1.0, tokens), grad_norm, bool(both[1] > 0)

    def _evaluate_and_log(self, step: int) -> float:
        val_loss = evaluate(self.engine, self.held_out, self.ctx)
        self.metrics.write({"step": step, "val_loss": val_loss, "val_ppl": math.exp(min(val_loss, 50))})
        return val_loss

    def run(self) -> dict:
        job, cfg, ctx = self.job, self.job.training, self.ctx
        start_step = self._resume()
        tokens_per_step = cfg.global_batch_size * cfg.seq_len
        peak = self.plan.estimates.peak_tflops_per_rank
        summary = RunSummary(world_size=ctx.world_size)
        started = time.perf_counter()
        loss, val_loss = math.nan, None
        for step in range(start_step, cfg.max_steps):
            step_start = time.perf_counter()
            loss, grad_norm, stop = self._step(step)
            elapsed = time.perf_counter() - step_start
            done = step + 1
            record = step_record(step=done, loss=loss, lr=self.scheduler.get_last_lr()[0], grad_norm=grad_norm,
                                 tokens=tokens_per_step, elapsed_s=elapsed, world_size=ctx.world_size,
                                 flops_per_token=self.plan.flops_per_token, peak_tflops=peak,
                                 memory_gib=device_memory_gib(ctx.device))
            summary.add_step(record, first=step == start_step)
            if done % cfg.log_every_n_steps == 0 or done == cfg.max_steps or done == start_step + 1:
                self.metrics.write(record)
            if self.held_out and cfg.eval_every_n_steps and done % cfg.eval_every_n_steps == 0 \
                    and done < cfg.max_steps:
                val_loss = self._evaluate_and_log(done)
            every = cfg.checkpoint.every_n_steps
            if stop:
                self._save(done, loss)
                if ctx.is_main:
                    print(f"stopped by SIGTERM after step {done}; checkpoint saved in {self.ckpt_root}; run the job "
                          "again to resume", flush=True)
                self.metrics.close()
                shutdown()
                return {"step": done, "stopped": True}
            if (every and done % every == 0) or done == cfg.max_steps:
                self._save(done, loss)

        if self.held_out:
            val_loss = self._evaluate_and_log(cfg.max_steps)
        hf_dir = export_hf_from_model(self.engine.checkpoint_module(), job, self.out_dir, is_main=ctx.is_main,
                                      keep=ctx.dp_rank == 0 and ctx.coordinate("tp") == 0,
                                      gather_stages=ctx.pp_size > 1)
        result = {"step": cfg.max_steps, "loss": loss, "val_loss": val_loss, "hf_model": str(hf_dir),
                  "metrics": str(self.metrics.path), "checkpoints": str(self.ckpt_root),
                  "elapsed_s": round(time.perf_counter() - started, 2), "world_size": ctx.world_size}
        if ctx.is_main:
            summary.write(self.out_dir, final_loss=loss, val_loss=val_loss, steps=cfg.max_steps,
                          elapsed_s=result["elapsed_s"])
        self.metrics.close()
        dist.barrier()
        if ctx.is_main:
            write_text_atomic(self.out_dir / COMPLETE_MARKER, json.dumps(result) + "\n")
        shutdown()
        return result


def train(job: JobConfig) -> dict:
    """Run the job to max_steps (resuming if a checkpoint exists) and return its summary."""
    return Trainer(job).run()
