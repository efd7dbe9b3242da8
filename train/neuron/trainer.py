"""The training loop on NeuronCores: NxD model and optimizer, our data, metrics and checkpoint policy.

Same contracts as the GPU engine (train/trainer.py): batches from train.data.loader.StepBatches
(a pure function of seed and step, so a resumed run reads what an uninterrupted one would), one
metrics.jsonl record per logged step on global rank 0, a checkpoint every
training.checkpoint.every_n_steps and at the end (NxD's save_checkpoint in its standard layout,
tag step_XXXXXXXX, keep_last kept), resume from the newest complete tag, and the COMPLETE marker
written last by rank 0. With precompile=True (run under neuron_parallel_compile) it traces
neuron.precompile_steps steps with the training topology and writes no checkpoint, metrics or marker.

Export to Hugging Face is a separate step: llm-launch-convert nxd-to-hf on the last checkpoint
(its command is in the COMPLETE summary), because gathering a TP x PP model on one host is what
the converter does one tensor at a time.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import time
from pathlib import Path

import torch

from launcher.config.schema import JobConfig
from launcher.jobfile import COMPLETE_MARKER, write_text_atomic
from launcher.plan import make_plan
from train.convert.spec import layout_of_job
from train.neuron.nxd_config import nxd_settings
from train.neuron.runtime import require_neuron

NXD_LAYOUT_FILE = "nxd_layout.json"


def tag_of(step: int) -> str:
    return f"step_{step:08d}"


def _cpu_mode() -> bool:
    """NxD's CPU mode (gloo, no XLA device): its own tests and shared/tools/nxd-cpu use it."""
    return os.environ.get("NXD_CPU_MODE") == "1"


def _pretrained_tag(path: str) -> tuple[str, str]:
    """(checkpoint dir, tag) of an NxD checkpoint folder written by llm-launch-convert hf-to-nxd."""
    folder = Path(path)
    if not (folder / "model").is_dir():
        raise ValueError(f"model.pretrained_path {folder} has no model/ shards; the Trainium backend starts from an "
                         f"NxD checkpoint: run llm-launch-convert hf-to-nxd -i {folder} -o <dir> --job <job.yaml> "
                         "and point model.pretrained_path at <dir>")
    return str(folder.parent), folder.name


def run(job: JobConfig, *, job_path: str = "job.yaml", precompile: bool = False) -> dict | None:
    """Train the job on NeuronCores (or NxD's CPU mode); returns the summary on every rank."""
    require_neuron()
    import torch.distributed as dist
    import torch_xla.core.xla_model as xm
    from neuronx_distributed.parallel_layers import parallel_state
    from neuronx_distributed.trainer import (
        initialize_parallel_model,
        initialize_parallel_optimizer,
        load_checkpoint,
        neuronx_distributed_config,
        save_checkpoint,
    )
    from neuronx_distributed.trainer.checkpoint import has_checkpoint  # not re-exported by the package
    from neuronx_distributed.trainer.checkpoint_storage import create_checkpoint_storage

    from train.data.loader import StepBatches
    from train.data.open import open_dataset
    from train.loss import unshifted_labels
    from train.metrics import MetricsLog, step_record
    from train.neuron.llama import CoreAttention, DecoderLayer, RMSNorm, build_model
    from train.schedule import build_scheduler

    if not dist.is_initialized():
        dist.init_process_group("gloo" if _cpu_mode() else "xla")
    device = torch.device("cpu") if _cpu_mode() else xm.xla_device()
    settings = nxd_settings(job)
    plan = make_plan(job)
    if dist.get_world_size() != plan.world_size:
        raise ValueError(f"job.yaml plans {plan.world_size} ranks but torchrun started {dist.get_world_size()}")
    nxd_config = neuronx_distributed_config(**settings.nxd_kwargs(
        decoder_layer_cls=DecoderLayer, core_attention_cls=CoreAttention, leaf_module_cls=[RMSNorm]))
    cfg, par = job.training, job.parallelism
    dtype = getattr(torch, settings.param_dtype)
    torch.manual_seed(cfg.seed)
    model = initialize_parallel_model(nxd_config, build_model, False, job.model, kv_replicator=settings.kv_replicator,
                                      fused_qkv=settings.fused_qkv, sequence_parallel=settings.sequence_parallel,
                                      dtype=dtype)
    opt = cfg.optimizer
    optimizer = initialize_parallel_optimizer(nxd_config, torch.optim.AdamW, model.parameters(), lr=opt.lr,
                                              betas=(opt.beta1, opt.beta2), eps=opt.eps, weight_decay=opt.weight_decay)
    scheduler = build_scheduler(optimizer, cfg.schedule, cfg.max_steps)

    rank = dist.get_rank()
    is_main = rank == 0
    dp_rank, dp_size = parallel_state.get_data_parallel_rank(), parallel_state.get_data_parallel_size()
    out_dir = Path(job.output_dir)
    dataset = open_dataset(cfg.data.train_path, job, is_main, object_broadcast=False)
    batches = StepBatches(dataset, seed=cfg.seed, global_batch=cfg.global_batch_size, micro_batch=cfg.micro_batch_size,
                          dp_rank=dp_rank, dp_size=dp_size)
    # An s3:// dir is handed to NxD as it is: its checkpoint storage writes and reads S3 itself.
    on_s3 = cfg.checkpoint.dir.startswith("s3://")
    ckpt_dir = cfg.checkpoint.dir.rstrip("/") if on_s3 else str(Path(cfg.checkpoint.dir))
    start_step = 0
    if not precompile and cfg.checkpoint.resume and has_checkpoint(ckpt_dir):
        content = load_checkpoint(ckpt_dir, tag=None, model=model, optimizer=optimizer, scheduler=scheduler)
        start_step = int((content or {}).get("step", 0))
        if is_main:
            print(f"resumed from {ckpt_dir} at step {start_step}", flush=True)
    elif job.model.pretrained_path:
        parent, tag = _pretrained_tag(job.model.pretrained_path)
        load_checkpoint(parent, tag=tag, model=model, optimizer=None, scheduler=None)

    metrics = MetricsLog(out_dir, is_main and not precompile)
    last_step = min(cfg.max_steps, start_step + job.neuron.precompile_steps) if precompile else cfg.max_steps
    tokens_per_step = cfg.global_batch_size * cfg.seq_len
    peak = plan.estimates.peak_tflops_per_rank
    started, loss_value = time.perf_counter(), math.nan
    for step in range(start_step, last_step):
        step_start = time.perf_counter()
        micro = [(ids, unshifted_labels(ids, mask)) for ids, mask in batches.micro_batches(step)]
        if settings.pipeline is not None:
            batch = torch.cat([ids for ids, _ in micro]).to(device)
            labels = torch.cat([labels for _, labels in micro]).to(device)
            loss = model.run_train(input_ids=batch, labels=labels)
        else:
            loss = torch.zeros((), device=device)
            for ids, labels in micro:
                micro_loss = model(ids.to(device), labels.to(device))[0] / len(micro)
                micro_loss.backward()
                loss = loss + micro_loss.detach()
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        xm.mark_step()
        done = step + 1
        if precompile:
            continue
        if done % cfg.log_every_n_steps == 0 or done == cfg.max_steps or done == start_step + 1:
            reduced = loss.detach().float().clone()
            dist.all_reduce(reduced, group=parallel_state.get_data_parallel_group())
            loss_value = float(reduced) / dp_size
            grad_norm = getattr(optimizer, "grad_norm", None)
            metrics.write(step_record(step=done, loss=loss_value, lr=lr,
                                      grad_norm=float(grad_norm) if grad_norm is not None else None,
                                      tokens=tokens_per_step, elapsed_s=time.perf_counter() - step_start,
                                      world_size=dist.get_world_size(), flops_per_token=plan.flops_per_token,
                                      peak_tflops=peak, memory_gib=None))
        every = cfg.checkpoint.every_n_steps
        if (every and done % every == 0) or done == cfg.max_steps:
            save_checkpoint(ckpt_dir, tag_of(done), model=model, optimizer=optimizer, scheduler=scheduler,
                            user_content={"step": done, "loss": loss_value}, use_xser=job.neuron.checkpoint_xser,
                            num_kept_ckpts=cfg.checkpoint.keep_last)
            if is_main:
                layout = layout_of_job(job)
                text = json.dumps({k: getattr(layout, k) for k in layout.__dataclass_fields__}) + "\n"
                if on_s3:
                    create_checkpoint_storage(ckpt_dir).save_text(text, f"{tag_of(done)}/{NXD_LAYOUT_FILE}")
                else:
                    write_text_atomic(Path(ckpt_dir) / tag_of(done) / NXD_LAYOUT_FILE, text)

    dist.barrier()
    elapsed = round(time.perf_counter() - started, 2)
    if precompile:
        if is_main:
            print(f"precompile: traced {last_step - start_step} steps in {elapsed} s; no checkpoint or marker written",
                  flush=True)
        return None
    final = f"{ckpt_dir}/{tag_of(cfg.max_steps)}" if on_s3 else Path(ckpt_dir) / tag_of(cfg.max_steps)
    summary = {"step": cfg.max_steps, "loss": loss_value, "backend": "neuron", "checkpoints": ckpt_dir,
               "final_checkpoint": str(final), "metrics": str(metrics.path), "elapsed_s": elapsed,
               "world_size": dist.get_world_size(), "tp": par.tp, "pp": par.pp, "dp": dp_size,
               "export": " ".join(shlex.quote(str(a)) for a in (
                   "llm-launch-convert", "nxd-to-hf", "-i", final, "-o", out_dir / "hf_model", "--job", job_path))}
    if is_main:
        write_text_atomic(out_dir / COMPLETE_MARKER, json.dumps(summary) + "\n")
    dist.barrier()
    return summary
