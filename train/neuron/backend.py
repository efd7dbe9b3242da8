"""The Trainium backend of the loop (llm_launch.train.backend): NxD model and optimizer, NxD checkpoints.

neuronx-distributed (https://awsdocs-neuron.readthedocs-hosted.com/en/latest/libraries/neuronx-distributed/)
builds the TP / PP / ZeRO-1 model and optimizer (neuronx_distributed_config, initialize_parallel_model,
initialize_parallel_optimizer) from the settings in train/neuron/nxd_config.py. Checkpoints are NxD's
save_checkpoint layout (tag step_XXXXXXXX, keep_last kept, plus nxd_layout.json for the converter);
resume takes the newest complete tag.

Loss weighting follows train/loss.py: the model returns the summed loss over its target tokens, and
each micro-batch's backward is scaled by dp / (target tokens of the global batch). NxD's optimizer
averages gradients over the data-parallel ranks, so the gradient is that of the mean over every
target token of the global batch, as on GPU.

Export to Hugging Face is a separate step (llm-launch-convert nxd-to-hf on the last checkpoint; the
command is in the COMPLETE summary), because gathering a TP x PP model on one host is what the
converter does one tensor at a time.

NxD's CPU mode (NXD_CPU_MODE=1: gloo, tensors on the CPU) runs this file's steps in the tests
(tests/train/neuron/test_nxd_cpu.py); see docs/trainium.md for what has not run on Trainium.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import torch
from llm_launch.launcher.jobfile import write_text_atomic
from llm_launch.launcher.nxd_layout import layout_differences, layout_record
from llm_launch.train.backend import Backend, StepResult, global_target_tokens, regroup_rows
from llm_launch.train.data.loader import Rows
from llm_launch.train.errors import JobError
from llm_launch.train.loss import target_count, unshifted_labels
from llm_launch.train.neuron.runtime import require_neuron

NXD_LAYOUT_FILE = "nxd_layout.json"
CPU_MODE_SAVE = ("NxD's CPU mode cannot write checkpoints (NxD's save_checkpoint synchronises and serialises "
                 "through torch-xla, which that mode replaces with stubs); set training.checkpoint.every_n_steps=0 "
                 "and run on Trainium to save")


def tag_of(step: int) -> str:
    return f"step_{step:08d}"


def cpu_mode() -> bool:
    """NxD's CPU mode (gloo, no XLA device), which NxD's own tests use."""
    return os.environ.get("NXD_CPU_MODE") == "1"


def pretrained_tag(path: str) -> tuple[str, str]:
    """(checkpoint dir, tag) of an NxD checkpoint folder written by llm-launch-convert hf-to-nxd."""
    folder = Path(path)
    if not (folder / "model").is_dir():
        raise JobError(f"model.pretrained_path {folder} has no model/ shards; the Trainium backend starts from an "
                       f"NxD checkpoint: run llm-launch-convert hf-to-nxd -i {folder} -o <dir> --job <job.yaml> "
                       "and point model.pretrained_path at <dir>")
    return str(folder.parent), folder.name


def check_resume_layout(job, ckpt_dir: str) -> None:
    """Refuse to resume from NxD checkpoints written in another layout: NxD loads shards as they are, so a
    different tp, pp or KV replication would load the wrong slices (the GPU backend's DCP reshards instead)."""
    expected = layout_record(job)
    for path in sorted(Path(ckpt_dir).glob(f"step_*/{NXD_LAYOUT_FILE}")):
        differ = layout_differences(json.loads(path.read_text(encoding="utf-8")), expected)
        if differ:
            raise JobError(f"{path.parent} was written with {differ}; an NxD checkpoint resumes only in its own "
                           "layout: convert it (llm-launch-convert nxd-to-hf, then hf-to-nxd --job for this job) and "
                           "start from it as model.pretrained_path, or use another training.checkpoint.dir")


class NeuronBackend(Backend):
    """This rank's part of an NxD model (train/neuron/llama.py) on a NeuronCore, or on the CPU in NxD's CPU mode."""

    name = "nxd"
    shares_objects_by_broadcast = False

    def start(self) -> None:
        require_neuron()
        import torch.distributed as dist
        import torch_xla.core.xla_model as xm
        from llm_launch.train.neuron.llama import CoreAttention, DecoderLayer, RMSNorm
        from llm_launch.train.neuron.nxd_config import nxd_settings
        from neuronx_distributed.parallel_layers import parallel_state
        from neuronx_distributed.trainer import neuronx_distributed_config

        self.dist, self.xm, self.parallel_state = dist, xm, parallel_state
        if not dist.is_initialized():
            dist.init_process_group("gloo" if cpu_mode() else "xla")
        if dist.get_world_size() != self.plan.world_size:
            raise JobError(f"job.yaml plans {self.plan.world_size} ranks but torchrun started "
                           f"{dist.get_world_size()}")
        self.device = torch.device("cpu") if cpu_mode() else xm.xla_device()
        self.settings = nxd_settings(self.job)
        # Initialises NxD's parallel state (TP, PP and DP groups) as well.
        self.nxd_config = neuronx_distributed_config(**self.settings.nxd_kwargs(
            decoder_layer_cls=DecoderLayer, core_attention_cls=CoreAttention, leaf_module_cls=[RMSNorm]))
        # An s3:// dir is handed to NxD as it is: its checkpoint storage reads and writes S3 itself.
        ckpt = self.job.training.checkpoint.dir
        self.on_s3 = ckpt.startswith("s3://")
        self.ckpt_dir = ckpt.rstrip("/") if self.on_s3 else str(Path(ckpt))
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        self.dp_rank = parallel_state.get_data_parallel_rank()
        self.dp_size = parallel_state.get_data_parallel_size()

    def build(self, *, document_eos: int | None = None) -> None:
        if document_eos is not None:  # llm_launch.launcher.validate refuses it for Trainium jobs; this guards a hand-edited job
            raise JobError("training.data.document_masking is not available on the Neuron backend; set false")
        from llm_launch.train.neuron.llama import build_model
        from llm_launch.train.schedule import build_scheduler
        from neuronx_distributed.trainer import initialize_parallel_model, initialize_parallel_optimizer

        cfg, settings = self.job.training, self.settings
        torch.manual_seed(cfg.seed)
        self.model = initialize_parallel_model(
            self.nxd_config, build_model, False, self.job.model, kv_replicator=settings.kv_replicator,
            fused_qkv=settings.fused_qkv, sequence_parallel=settings.sequence_parallel,
            dtype=getattr(torch, settings.param_dtype))
        self.lm = self.model.original_module()
        opt = cfg.optimizer
        self.optimizer = initialize_parallel_optimizer(
            self.nxd_config, torch.optim.AdamW, self.model.parameters(), lr=opt.lr, betas=(opt.beta1, opt.beta2),
            eps=opt.eps, weight_decay=opt.weight_decay)
        self.scheduler = build_scheduler(self.optimizer, cfg.schedule, cfg.max_steps)
        if self.job.model.pretrained_path and not self._resumable():
            from neuronx_distributed.trainer import load_checkpoint

            parent, tag = pretrained_tag(self.job.model.pretrained_path)
            load_checkpoint(parent, tag=tag, model=self.model, optimizer=None, scheduler=None)

    def _resumable(self) -> bool:
        from neuronx_distributed.trainer.checkpoint import has_checkpoint  # not re-exported by the package

        if not (self.job.training.checkpoint.resume and has_checkpoint(self.ckpt_dir)):
            return False
        if not self.on_s3:  # the layout files of an S3 prefix are not read back here
            check_resume_layout(self.job, self.ckpt_dir)
        return True

    def _counts_loss(self) -> bool:
        """Whether this rank's summed loss counts once in the job's total: every TP rank holds the same value
        (NxD's parallel_cross_entropy), so only TP rank 0 reports it."""
        return self.parallel_state.get_tensor_model_parallel_rank() == 0

    def _dp_sum(self, value: float) -> float:
        tensor = torch.tensor(float(value), device=self.device)
        self.dist.all_reduce(tensor, group=self.parallel_state.get_data_parallel_group())
        return float(tensor)

    def _world_sum(self, *values: torch.Tensor) -> list[float]:
        stacked = torch.stack([v.detach().float().to(self.device) for v in values])
        self.dist.all_reduce(stacked)
        return [float(v) for v in stacked.cpu()]

    def step(self, rows: list[Rows], *, stop_vote: bool) -> StepResult:
        micro = [(ids, unshifted_labels(ids, mask)) for ids, mask in rows]
        tokens = global_target_tokens([labels[:, 1:] for _, labels in micro], self._dp_sum, self.dp_size,
                                      masked=any(mask is not None for _, mask in rows))
        scale = self.dp_size / max(1.0, tokens)
        if self.settings.pipeline is not None:
            summed = self._pipeline_train(micro, scale, tokens)
        else:
            self.lm.loss_scale = 1.0
            summed = torch.zeros((), device=self.device)
            for ids, labels in micro:
                micro_sum = self.model(ids.to(self.device), labels.to(self.device))[0]
                (micro_sum * scale).backward()
                summed = summed + micro_sum.detach()
            if not self._counts_loss():
                summed = summed * 0
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.xm.mark_step()
        grad_norm = getattr(self.optimizer, "grad_norm", None)
        loss_sum, votes = self._world_sum(summed, torch.tensor(float(stop_vote)))
        return StepResult(loss=loss_sum / max(1.0, tokens), lr=lr, stop=votes > 0,
                          grad_norm=float(grad_norm) if grad_norm is not None else None)

    def _pipeline_train(self, micro: list[tuple[torch.Tensor, torch.Tensor]], scale: float,
                        tokens: float) -> torch.Tensor:
        """NxD's pipeline (NxDPPModel.run_train) over the step's rows; returns this rank's share of the summed loss.

        run_train divides each microbatch's loss by the number of microbatches before its backward and, with
        broadcast_and_average_loss, returns the loss averaged over microbatches and data-parallel ranks on every
        rank. With loss_scale = scale x microbatches that average is the global mean per target token, so rank 0
        reports mean x tokens and the others nothing. Not run in NxD's CPU mode (docs/trainium.md).
        """
        self.lm.loss_scale = scale * self.settings.pipeline.num_microbatches
        batch = torch.cat([ids for ids, _ in micro]).to(self.device)
        labels = torch.cat([labels for _, labels in micro]).to(self.device)
        mean = self.model.run_train(input_ids=batch, labels=labels)
        return mean.detach().float() * tokens if self.rank == 0 else torch.zeros((), device=self.device)

    @torch.no_grad()
    def evaluate(self, rows: list[Rows]) -> float:
        batches = [(ids, unshifted_labels(ids, mask)) for ids, mask in rows]
        pipelined = self.settings.pipeline is not None
        if pipelined:  # one run_eval call takes this rank's share of a global batch; a remainder is left out
            batches = regroup_rows(batches, self.job.training.global_batch_size // self.dp_size)
        tokens = self._dp_sum(sum(target_count(labels[:, 1:]) for _, labels in batches))
        self.model.eval()
        summed = torch.zeros((), device=self.device)
        self.lm.loss_scale = float(self.settings.pipeline.num_microbatches) if pipelined else 1.0
        for ids, labels in batches:
            if pipelined:  # the call's summed loss, averaged over data-parallel ranks (run_eval's average)
                summed = summed + self.model.run_eval(input_ids=ids.to(self.device),
                                                      labels=labels.to(self.device)).detach().float()
            else:
                summed = summed + self.model(ids.to(self.device), labels.to(self.device))[0].detach().float()
        if pipelined:
            summed = summed * self.dp_size if self.rank == 0 else summed * 0
        elif not self._counts_loss():
            summed = summed * 0
        self.xm.mark_step()
        self.model.train()
        (total,) = self._world_sum(summed)
        return total / max(1.0, tokens)

    def save(self, step: int, *, loss: float) -> Path:
        from neuronx_distributed.trainer import save_checkpoint

        if cpu_mode():
            raise JobError(CPU_MODE_SAVE)
        cfg = self.job.training.checkpoint
        save_checkpoint(self.ckpt_dir, tag_of(step), model=self.model, optimizer=self.optimizer,
                        scheduler=self.scheduler, user_content={"step": step, "loss": loss},
                        use_xser=self.job.neuron.checkpoint_xser, num_kept_ckpts=cfg.keep_last)
        folder = self._tag_path(step)
        if self.is_main:
            text = json.dumps(layout_record(self.job)) + "\n"
            if self.on_s3:
                from neuronx_distributed.trainer.checkpoint_storage import create_checkpoint_storage

                create_checkpoint_storage(self.ckpt_dir).save_text(text, f"{tag_of(step)}/{NXD_LAYOUT_FILE}")
            else:
                write_text_atomic(folder / NXD_LAYOUT_FILE, text)
        self.dist.barrier()
        return folder

    def _tag_path(self, step: int):
        """Where the checkpoint of step lies: a folder, or an s3:// prefix (a string)."""
        return f"{self.ckpt_dir}/{tag_of(step)}" if self.on_s3 else Path(self.ckpt_dir) / tag_of(step)

    def resume(self) -> int:
        if not self._resumable():
            return 0
        from neuronx_distributed.trainer import load_checkpoint

        content = load_checkpoint(self.ckpt_dir, tag=None, model=self.model, optimizer=self.optimizer,
                                  scheduler=self.scheduler)
        step = int((content or {}).get("step", 0))
        if self.is_main:
            print(f"resumed from {self.ckpt_dir} at step {step}", flush=True)
        return step

    def load_for_eval(self) -> tuple[str, int | None]:
        source = self.job.model.pretrained_path
        from neuronx_distributed.trainer import load_checkpoint
        from neuronx_distributed.trainer.checkpoint import has_checkpoint

        if source is not None:  # build() loaded it
            return source, None
        if not has_checkpoint(self.ckpt_dir):
            raise JobError(f"no model to evaluate: {self.ckpt_dir} holds no complete NxD checkpoint and "
                           "model.pretrained_path is not set")
        content = load_checkpoint(self.ckpt_dir, tag=None, model=self.model, optimizer=None, scheduler=None)
        return self.ckpt_dir, int((content or {}).get("step", 0)) or None

    def export(self, out_dir: Path, job_path: str) -> dict:
        final = self._tag_path(self.job.training.max_steps)
        par = self.job.parallelism
        return {"final_checkpoint": str(final), "tp": par.tp, "pp": par.pp, "dp": self.dp_size,
                "export": " ".join(shlex.quote(str(a)) for a in (
                    "llm-launch-convert", "nxd-to-hf", "-i", final, "-o", out_dir / "hf_model", "--job", job_path))}

    def barrier(self) -> None:
        self.dist.barrier()

    def close(self) -> None:
        self.dist.barrier()
