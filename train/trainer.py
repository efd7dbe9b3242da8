"""The training loop shared by the entrypoints: data, model, optimizer, steps, checkpoints, export.

Reads nothing but the resolved JobConfig, so what runs is what the launcher planned.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path

import torch
import torch.distributed as dist

from launcher.config.schema import JobConfig
from launcher.jobfile import COMPLETE_MARKER, write_text_atomic
from launcher.plan import make_plan
from train.checkpoint import find_latest, load_checkpoint, save_checkpoint
from train.data.loader import StepBatches, eval_batches
from train.data.packed import INDEX_FILE, PackedDataset
from train.data.prepare import prepare_corpus
from train.distributed import Dist, init_distributed, shutdown
from train.export import export_hf
from train.metrics import MetricsLog, device_memory_gib
from train.model import build_model
from train.parallelize import apply_activation_checkpointing, apply_compile, apply_data_parallel
from train.schedule import build_scheduler

SUPPORTED_DATA_PARALLEL = ("ddp", "fsdp", "hsdp", "none")


class JobNotSupported(Exception):
    """The job asks for something this engine does not run."""


def _open_dataset(path: str | None, job: JobConfig, ctx: Dist) -> PackedDataset | None:
    """Open packed shards, packing a raw corpus first (on rank 0, the others wait)."""
    if path is None:
        return None
    source = Path(path)
    if not (source / INDEX_FILE).is_file():
        data = job.training.data
        target = None
        if ctx.is_main:
            target = prepare_corpus(source, Path(data.tokenizer_path), job.training.seq_len,
                                    Path(job.output_dir) / "data", data.text_field, job.model.vocab_size)
        shared = [str(target) if target else None]
        dist.broadcast_object_list(shared, src=0)
        source = Path(shared[0])
    dataset = PackedDataset.open(source)
    if dataset.seq_len != job.training.seq_len:
        raise JobNotSupported(f"{source} holds rows of {dataset.seq_len} tokens but training.seq_len is "
                              f"{job.training.seq_len}")
    return dataset


def _sync_context(model: torch.nn.Module, sync: bool):
    """Skip gradient all-reduce on all but the last micro-batch of a step."""
    if hasattr(model, "set_requires_gradient_sync"):  # FSDP2
        model.set_requires_gradient_sync(sync)
        return contextlib.nullcontext()
    if hasattr(model, "no_sync") and not sync:  # DDP
        return model.no_sync()
    return contextlib.nullcontext()


def _mean_over_ranks(value: torch.Tensor) -> float:
    reduced = value.detach().clone()
    dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
    return float(reduced) / dist.get_world_size()


def _grad_norm_and_clip(model: torch.nn.Module, max_norm: float) -> float:
    params = [p for p in model.parameters() if p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else float("inf"))
    if hasattr(norm, "full_tensor"):
        norm = norm.full_tensor()
    return float(norm)


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches: list[torch.Tensor], ctx: Dist, autocast) -> float:
    """Mean validation loss over all ranks' batches."""
    model.eval()
    total = torch.zeros((), device=ctx.device)
    for batch in batches:
        batch = batch.to(ctx.device)
        with autocast():
            total += model(input_ids=batch, labels=batch).loss.float()
    model.train()
    return _mean_over_ranks(total / max(1, len(batches)))


def train(job: JobConfig) -> dict:
    """Run the job to max_steps (resuming if a checkpoint exists) and return its summary."""
    plan = make_plan(job)
    par, cfg = job.parallelism, job.training
    if par.tp > 1 or par.pp > 1 or par.data_parallel not in SUPPORTED_DATA_PARALLEL:
        raise JobNotSupported("this engine runs data parallelism only (ddp, fsdp, hsdp); tensor and pipeline "
                              "parallel training is not available yet")
    ctx = init_distributed(plan.dp)
    out_dir = Path(job.output_dir)
    metrics = MetricsLog(out_dir, ctx.is_main)
    train_data = _open_dataset(cfg.data.train_path, job, ctx)
    valid_data = _open_dataset(cfg.data.valid_path, job, ctx)
    batches = StepBatches(train_data, seed=cfg.seed, global_batch=cfg.global_batch_size,
                          micro_batch=cfg.micro_batch_size, dp_rank=ctx.rank, dp_size=plan.dp)
    held_out = (eval_batches(valid_data, micro_batch=cfg.micro_batch_size, batches=cfg.eval_batches,
                             dp_rank=ctx.rank, dp_size=plan.dp) if valid_data else [])

    bf16 = cfg.precision == "bf16"
    model = build_model(job.model, cfg.seed)
    apply_activation_checkpointing(model, par.activation_checkpointing)
    if cfg.compile:
        apply_compile(model)
    model = apply_data_parallel(model, par.data_parallel, ctx, bf16)
    opt_cfg = cfg.optimizer
    optimizer = torch.optim.AdamW(model.parameters(), lr=opt_cfg.lr, betas=(opt_cfg.beta1, opt_cfg.beta2),
                                  eps=opt_cfg.eps, weight_decay=opt_cfg.weight_decay)
    scheduler = build_scheduler(optimizer, cfg.schedule, cfg.max_steps)
    use_autocast = bf16 and par.data_parallel not in ("fsdp", "hsdp")

    def autocast():
        if use_autocast:
            return torch.autocast(ctx.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    ckpt_root = Path(cfg.checkpoint.dir)
    start_step = 0
    latest = find_latest(ckpt_root) if cfg.checkpoint.resume else None
    if latest is not None:
        start_step = load_checkpoint(latest, model, optimizer, scheduler, rank=ctx.rank)["step"]
        if ctx.is_main:
            print(f"resumed from {latest} at step {start_step}", flush=True)

    tokens_per_step = cfg.global_batch_size * cfg.seq_len
    peak = plan.estimates.peak_tflops_per_rank
    started = time.perf_counter()
    loss_value, val_loss = math.nan, None
    for step in range(start_step, cfg.max_steps):
        step_start = time.perf_counter()
        micro_batches = batches.micro_batches(step)
        step_loss = torch.zeros((), device=ctx.device)
        for i, batch in enumerate(micro_batches):
            batch = batch.to(ctx.device)
            with _sync_context(model, i == len(micro_batches) - 1), autocast():
                loss = model(input_ids=batch, labels=batch).loss / len(micro_batches)
            loss.backward()
            step_loss += loss.detach().float()
        grad_norm = _grad_norm_and_clip(model, opt_cfg.grad_clip)
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        loss_value = _mean_over_ranks(step_loss)
        elapsed = time.perf_counter() - step_start
        done = step + 1
        if done % cfg.log_every_n_steps == 0 or done == cfg.max_steps or done == start_step + 1:
            per_device = tokens_per_step / elapsed / ctx.world_size
            metrics.write({
                "step": done, "loss": loss_value, "lr": lr, "grad_norm": grad_norm,
                "tokens_per_s": tokens_per_step / elapsed, "tokens_per_s_per_device": per_device,
                "mfu": per_device * plan.flops_per_token / (peak * 1e12) if peak else None,
                "step_time_s": elapsed, "memory_gib": device_memory_gib(ctx.device),
            })
        if held_out and cfg.eval_every_n_steps and done % cfg.eval_every_n_steps == 0 and done < cfg.max_steps:
            val_loss = evaluate(model, held_out, ctx, autocast)
            metrics.write({"step": done, "val_loss": val_loss, "val_ppl": math.exp(min(val_loss, 50))})
        every = cfg.checkpoint.every_n_steps
        if (every and done % every == 0) or done == cfg.max_steps:
            save_checkpoint(ckpt_root, done, model, optimizer, scheduler, rank=ctx.rank,
                            keep_last=cfg.checkpoint.keep_last, extra={"loss": loss_value})

    if held_out:
        val_loss = evaluate(model, held_out, ctx, autocast)
        metrics.write({"step": cfg.max_steps, "val_loss": val_loss, "val_ppl": math.exp(min(val_loss, 50))})
    hf_dir = export_hf(model, job, out_dir, is_main=ctx.is_main)
    summary = {"step": cfg.max_steps, "loss": loss_value, "val_loss": val_loss, "hf_model": str(hf_dir),
               "metrics": str(metrics.path), "checkpoints": str(ckpt_root),
               "elapsed_s": round(time.perf_counter() - started, 2), "world_size": ctx.world_size}
    dist.barrier()
    if ctx.is_main:
        write_text_atomic(out_dir / COMPLETE_MARKER, json.dumps(summary) + "\n")
    shutdown()
    return summary
