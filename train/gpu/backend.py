"""The torch engine's backend of the loop (llm_launch.train.backend): the Engine on the job's mesh, AdamW, DCP
checkpoints, HF export.

Runs on NVIDIA GPUs (nccl), on Trainium 2/3 through TorchNeuron (device and process group "neuron") and on the CPU
(gloo), which is how the tests and the default tiny run drive it; the differences live in the device table
(llm_launch.launcher.devices, llm_launch.train.devices). The folder keeps its historical name, train/gpu/.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.distributed as dist
from llm_launch.launcher.job_record import RECORD_KEY
from llm_launch.train.backend import Backend, StepResult, global_target_tokens, regroup_rows
from llm_launch.train.data.loader import Rows
from llm_launch.train.distributed import shutdown
from llm_launch.train.errors import JobError
from llm_launch.train.gpu.async_checkpoint import AsyncCheckpointer
from llm_launch.train.gpu.checkpoint import (
    TRAINER_STATE,
    find_latest,
    load_checkpoint,
    load_model_weights,
    resume_from,
    save_checkpoint,
)
from llm_launch.train.gpu.checkpoint_store import S3Prefix, open_store
from llm_launch.train.gpu.engine import Batch, Engine, global_sum
from llm_launch.train.gpu.export import export_hf_from_model
from llm_launch.train.gpu.grad_clip import clip_gradients
from llm_launch.train.gpu.mesh import Dist, init_distributed
from llm_launch.train.gpu.optimizer import build_optimizer
from llm_launch.train.gpu.preference import FIGURES, PreferenceObjective, pair_batch
from llm_launch.train.loss import next_token_targets, summed_cross_entropy, target_count
from llm_launch.train.metrics import device_memory_gib
from llm_launch.train.resume_check import check_resume, record_of
from llm_launch.train.schedule import build_scheduler

SUPPORTED_DATA_PARALLEL = ("ddp", "fsdp", "hsdp", "none")


def to_batches(rows: list[Rows]) -> list[Batch]:
    """(input ids, next-token targets) for each batch of rows."""
    return [(ids, next_token_targets(ids, mask)) for ids, mask in rows]


class GpuBackend(Backend):
    """This rank's stages of a transformers model under FSDP2 / DDP, TP and PP (train/gpu/engine.py)."""

    name = "torch"
    supports_watchdog = True

    def start(self) -> None:
        par = self.job.parallelism
        if par.data_parallel not in SUPPORTED_DATA_PARALLEL:
            raise JobError(f"parallelism.data_parallel={par.data_parallel} is an NxD strategy; this "
                           "engine runs ddp, fsdp or hsdp")
        self.ctx: Dist = init_distributed(self.job, self.plan)
        self.ckpt_root = open_store(self.job.training.checkpoint.dir, self.job.cluster.region)
        self.async_saves: AsyncCheckpointer | None = None
        ctx = self.ctx
        self.rank, self.world_size, self.dp_rank, self.dp_size = ctx.rank, ctx.world_size, ctx.dp_rank, ctx.dp_size
        if self.is_main:
            print(f"torch engine on {ctx.kind.name}: device {ctx.device}, process group {ctx.kind.process_group}",
                  flush=True)

    def build(self, *, document_eos: int | None = None) -> None:
        cfg = self.job.training
        self.engine = Engine(self.job, self.ctx, pipeline_microbatches=self.plan.pipeline_microbatches)
        self.preference = PreferenceObjective(self.job, self.ctx, self.engine) if self.job.task == "dpo" else None
        self.eval_figures: dict[str, float] = {}
        """Preference figures of the last evaluate() (empty for token cross-entropy tasks)."""
        if document_eos is not None:
            self.engine.mask_documents(document_eos)
        self.optimizer = build_optimizer(self.engine.parameters(), cfg.optimizer, fused=self.ctx.kind.fused_adamw)
        if cfg.checkpoint.mode == "async":  # its process group now, with every rank, not at the first save
            self.async_saves = AsyncCheckpointer(self.ctx.device)
        self.scheduler = build_scheduler(self.optimizer, cfg.schedule, cfg.max_steps)

    def _dp_sum(self, value) -> float:
        return global_sum(value, self.ctx, group=self.ctx.dp_mesh.get_group())

    def _objective(self, rows: list[Rows]):
        """(batches, the step's divisor: the global batch's target tokens or pairs, the objective)."""
        if self.preference is not None:  # pairs weigh the same: the count is the global batch's pairs
            batches = [pair_batch(r) for r in rows]
            self.preference.prepare(batches)
            return batches, float(sum(len(ids) // 2 for ids, _ in batches) * self.ctx.dp_size), self.preference
        batches = to_batches(rows)
        tokens = global_target_tokens([t for _, t in batches], self._dp_sum, self.ctx.dp_size,
                                      masked=any(mask is not None for _, mask in rows))
        return batches, tokens, summed_cross_entropy

    def step(self, rows: list[Rows], *, stop_vote: bool) -> StepResult:
        ctx, started = self.ctx, time.perf_counter()
        batches, tokens, objective = self._objective(rows)
        summed = self.engine.train_step(batches, scale=ctx.dp_size / max(1.0, tokens), objective=objective)
        grad_norm = clip_gradients(self.engine.parameters(), self.job.training.optimizer.grad_clip,
                                   ctx.mesh.get_group("pp") if ctx.pp_size > 1 else None)
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        figures = self.preference.sums if self.preference is not None else None
        if self.arrival_hook is not None:
            self.arrival_hook()
        rank_times = [0.0] * ctx.world_size
        rank_times[ctx.rank] = time.perf_counter() - started  # this rank's time to reach the collective
        loss, *figure_sums, votes = self._job_sums([summed, figures], votes=float(stop_vote), tail=rank_times)
        rank_times = [figure_sums.pop() for _ in range(ctx.world_size)][::-1]
        count = max(1.0, tokens)
        means = {name: v / count for name, v in zip(FIGURES, figure_sums, strict=True)} if figure_sums else {}
        return StepResult(loss=loss / count, grad_norm=grad_norm, lr=lr, stop=votes > 0, figures=means,
                          rank_times=rank_times)

    def _job_sums(self, counted: list[torch.Tensor | float | None], votes: float = 0.0,
                  tail: list[float] = ()) -> list[float]:
        """One all-reduce over the job: the counted values (losses, pair counts, preference figure sums) from the
        ranks whose loss counts once per replica (last stage, first tp rank), then tail (summed as every rank
        gives it: one slot per rank gathers per-rank figures), then every rank's stop votes."""
        device = self.ctx.device
        parts = [torch.as_tensor(v, dtype=torch.float64, device=device).detach().reshape(-1)
                 for v in counted if v is not None]
        own = torch.cat(parts)
        if not self.engine.reports_loss():
            own = torch.zeros_like(own)
        totals = torch.cat([own, torch.tensor([*tail, votes], dtype=torch.float64, device=device)])
        dist.all_reduce(totals)
        return totals.tolist()

    def evaluate(self, rows: list[Rows]) -> float:
        if self.preference is not None:
            return self._evaluate_pairs(rows)
        batches = to_batches(rows)
        if self.engine.pipelined:
            batches = regroup_rows(batches, self.job.training.global_batch_size // self.ctx.dp_size)
        summed = self.engine.eval_loss(batches)  # every rank runs it: stages and tensor shards exchange activations
        if not self.engine.reports_loss():
            summed = summed * 0
        total = global_sum(summed, self.ctx)
        count = self._dp_sum(sum(target_count(t) for _, t in batches))
        return total / max(1.0, count)

    def _evaluate_pairs(self, rows: list[Rows]) -> float:
        """Mean pair loss of the held-out pairs, with the preference figures kept for evaluation_figures()."""
        batches = [pair_batch(r) for r in rows]
        self.preference.prepare(batches)
        summed = self.engine.eval_loss(batches, objective=self.preference)
        pairs = float(sum(len(ids) // 2 for ids, _ in batches))
        loss, pairs, *figure_sums, _ = self._job_sums([summed, pairs, self.preference.sums])
        pairs = max(1.0, pairs)
        self.eval_figures = {name: v / pairs for name, v in zip(FIGURES, figure_sums, strict=True)}
        return loss / pairs

    def evaluation_figures(self) -> dict[str, float]:
        return dict(self.eval_figures)

    def save(self, step: int, *, loss: float) -> Path | None:
        cfg = self.job.training.checkpoint
        extra = {"loss": loss, RECORD_KEY: self.record()}
        if self.async_saves is not None:
            self.async_saves.save(self.ckpt_root, step, self.engine.checkpoint_module(), self.optimizer,
                                  self.scheduler, rank=self.ctx.rank, keep_last=cfg.keep_last, extra=extra)
            return None
        return save_checkpoint(self.ckpt_root, step, self.engine.checkpoint_module(), self.optimizer, self.scheduler,
                               rank=self.ctx.rank, keep_last=cfg.keep_last, extra=extra)

    def record(self) -> dict:
        """What defines this job (launcher/job_record.py), recorded in every checkpoint; computed once."""
        if getattr(self, "_record", None) is None:
            self._record = record_of(self.job, self.plan)
        return self._record

    def wait_for_saves(self) -> None:
        if self.async_saves is not None:
            self.async_saves.wait()

    def resume(self) -> int:
        resume = self.job.training.checkpoint.resume
        latest = resume_from(self.ckpt_root, is_main=self.is_main) if resume else None
        if latest is None:
            return 0
        on_s3 = isinstance(self.ckpt_root, S3Prefix)
        name = latest.rsplit("/", 1)[1] if on_s3 else latest.name
        recorded = json.loads(self.ckpt_root.read_text(f"{name}/{TRAINER_STATE}") if on_s3
                              else (latest / TRAINER_STATE).read_text(encoding="utf-8"))
        check_resume(self.job, self.record(), recorded, str(latest), is_main=self.is_main)
        state = load_checkpoint(latest.rsplit("/", 1)[1] if on_s3 else latest, self.engine.checkpoint_module(),
                                self.optimizer, self.scheduler, rank=self.ctx.rank,
                                store=self.ckpt_root if on_s3 else None)
        if self.is_main:
            print(f"resumed from {latest} at step {state['step']}", flush=True)
        return state["step"]

    def load_for_eval(self) -> tuple[str, int | None]:
        source = self.job.model.pretrained_path
        if source is not None:  # the Engine loaded it when it was built
            return source, None
        checkpoint = None if isinstance(self.ckpt_root, S3Prefix) else find_latest(self.ckpt_root)
        if checkpoint is None:
            raise JobError(f"no model to evaluate: {self.ckpt_root} holds no complete checkpoint and "
                           "model.pretrained_path is not set")
        return str(checkpoint), load_model_weights(checkpoint, self.engine.checkpoint_module())["step"]

    def export(self, out_dir: Path, job_path: str) -> dict:
        ctx = self.ctx  # gathered in memory: no shard needs to be on rank 0's disk
        hf_dir = export_hf_from_model(self.engine.checkpoint_module(), self.job, out_dir, is_main=self.is_main,
                                      keep=ctx.dp_rank == 0 and ctx.coordinate("tp") == 0,
                                      gather_stages=ctx.pp_size > 1)
        return {"hf_model": str(hf_dir)}

    def memory_gib(self) -> float | None:
        return device_memory_gib(self.ctx.device, self.ctx.kind)

    def measures_accelerator_memory(self) -> bool:
        return self.ctx.device.type != "cpu"

    def barrier(self) -> None:
        dist.barrier()

    def close(self) -> None:
        if self.async_saves is not None:
            self.async_saves.close()
        shutdown()


TorchBackend = GpuBackend
"""The name the backend table uses: one torch engine for CUDA, Neuron and CPU."""
