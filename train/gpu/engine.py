"""The model as this rank runs it: its stages, parallelised, with one training step and one evaluation.

A step takes this rank's micro-batches of (input ids, targets). Losses are summed over
target tokens and scaled by dp / (target tokens in the global batch), so gradients, after
data parallelism averages them, are the global mean whatever the layout.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.distributed as dist
from llm_launch.launcher.config.schema import JobConfig
from llm_launch.train.gpu.lora import apply_lora, trainable_parameter_count
from llm_launch.train.gpu.mesh import Dist
from llm_launch.train.gpu.parallelize import parallelize_stage, replicate_stage, unwrap
from llm_launch.train.gpu.pipeline import ScaledLoss, build_schedule
from llm_launch.train.gpu.stage import build_stages, rank_model, retie_embeddings, stage_indices
from llm_launch.train.loss import summed_cross_entropy
from llm_launch.train.model import build_model, fresh_rotary, load_hf_weights, load_pretrained, pretrained_config_json
from torch.distributed.fsdp import FSDPModule

Batch = tuple[torch.Tensor, torch.Tensor]
"""(input ids, next-token targets), each [rows, seq_len]."""
Objective = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(logits, targets) of one micro-batch -> its summed loss (next-token cross-entropy unless a task says otherwise)."""


def _sync_context(module: torch.nn.Module, sync: bool):
    """Turn the data-parallel gradient sync on or off for the next backward."""
    if hasattr(module, "set_requires_gradient_sync"):  # FSDP2
        module.set_requires_gradient_sync(sync)
        return contextlib.nullcontext()
    if hasattr(module, "no_sync") and not sync:  # DDP
        return module.no_sync()
    return contextlib.nullcontext()


class Engine:
    """Builds, parallelises and runs this rank's part of the model."""

    def __init__(self, job: JobConfig, ctx: Dist, *, pipeline_microbatches: int, frozen: bool = False,
                 init_weights: bool = True, replicate: bool = True):
        """frozen: a model that never trains (a preference reference): no gradients, no data-parallel wrapper.
        init_weights=False leaves the parallelised stages on the meta device until materialise() gives them
        storage without values (the memory trace calls it under fake tensors). replicate=False leaves out the
        DDP wrapper (its C++ reducer needs real tensors; the memory trace stands in for its buckets)."""
        par, cfg = job.parallelism, job.training
        self.ctx = ctx
        self.bf16 = cfg.precision in ("bf16", "fp8")  # fp8: bf16 plus float8 linear layers (train/gpu/fp8.py)
        # every_microbatch reduce-scatters each micro-batch's gradients (FSDP keeps them sharded);
        # last_microbatch syncs once per step (auto's choice under DDP; FSDP would hold unsharded gradients).
        self.sync_every_microbatch = par.gradient_sync == "every_microbatch"
        lora = cfg.lora.enabled and not frozen
        # Sharded loading after parallelisation needs the checkpoint's names; adapters rename the
        # layers they wrap, so a LoRA job loads its base model whole first.
        pretrained = job.model.pretrained_path if not lora and init_weights else None
        if lora and job.model.pretrained_path and init_weights:
            pretrained_config_json(job.model)  # the job's model section agrees with the file, or a JobError
            hf_model = load_pretrained(job.model.pretrained_path)
        else:
            hf_model = build_model(job.model, cfg.seed, on_meta=bool(pretrained) or not init_weights,
                                   tokenizer_path=cfg.data.tokenizer_path)
        self.hf_config = hf_model.config
        """The transformers config the model was built from (the pretrained model's own, or the job's)."""
        self.rotary_class = type(hf_model.model.rotary_emb)
        if frozen:
            hf_model.requires_grad_(False)
        if lora:
            apply_lora(hf_model, cfg.lora, cfg.seed)
            if ctx.is_main:
                trainable, total = trainable_parameter_count(hf_model)
                print(f"LoRA: training {trainable:,} of {total:,} parameters", flush=True)
        stages = build_stages(hf_model, pp_rank=ctx.pp_rank, pp_size=ctx.pp_size, virtual_pp=par.virtual_pp)
        self.stage_ids = stage_indices(pp_rank=ctx.pp_rank, pp_size=ctx.pp_size, virtual_pp=par.virtual_pp)
        for stage in stages:
            if not pretrained and init_weights:
                stage.to(ctx.device)
            if cfg.precision == "fp8":
                from llm_launch.train.gpu.fp8 import convert_to_float8  # torchao only for fp8 jobs

                convert_to_float8(stage)
            parallelize_stage(stage, par, ctx, bf16=self.bf16, compile_layers=cfg.compile,
                              tied=bool(self.hf_config.tie_word_embeddings))
        self.stages = stages
        self.model = rank_model(stages)
        if pretrained:
            self.materialise(job)
            load_hf_weights(self.model, pretrained, tied=job.model.tie_word_embeddings)
        modules = list(stages) if frozen or not replicate else [replicate_stage(stage, par, ctx) for stage in stages]
        self.modules = modules
        self.chunked_loss = cfg.loss_chunk_tokens > 0 and len(stages) == 1 and ctx.pp_size == 1
        """training.loss_chunk_tokens: the stage computes the summed cross-entropy itself (validate refuses the rest)."""
        if self.chunked_loss:
            stages[0].loss_chunk_tokens = cfg.loss_chunk_tokens
        self.is_last_stage = any(s.is_last for s in stages)
        self.pipelined = ctx.pp_size > 1
        self.loss = ScaledLoss()
        self.schedule = None
        if self.pipelined:
            self.schedule = build_schedule(modules, self.stage_ids, ctx, schedule=par.pp_schedule,
                                           microbatches=pipeline_microbatches, virtual_pp=par.virtual_pp,
                                           loss=self.loss)
        # Mixed precision: FSDP2 casts parameters itself; otherwise autocast on GPU.
        self.autocast = self.bf16 and not hasattr(self.modules[0], "set_requires_gradient_sync")

    def materialise(self, job: JobConfig) -> None:
        """Give meta-built stages real (uninitialised) storage on the device, then rebuild the rotary tables."""
        rotary = fresh_rotary(self.hf_config, self.rotary_class, self.ctx.device)
        for stage in self.stages:
            stage.to_empty(device=self.ctx.device)
            stage.model.rotary_emb = rotary
            if self.hf_config.tie_word_embeddings and not isinstance(stage, FSDPModule):
                retie_embeddings(stage)  # FSDP2 keeps its own (shared) sharded parameters through to_empty

    def mask_documents(self, eos_id: int) -> None:
        """Keep attention inside packed documents (single-stage models)."""
        for stage in self.stages:
            stage.document_eos = eos_id

    def parameters(self):
        """The parameters that train (all of them, or the adapters of a LoRA job)."""
        return [p for module in self.modules for p in module.parameters() if p.requires_grad]

    def compute_precision(self):
        """bf16 autocast where FSDP2 does not cast the parameters itself (GPU, bf16); otherwise nothing."""
        if self.autocast:
            return torch.autocast(self.ctx.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def train_step(self, batches: list[Batch], scale: float,
                   objective: Objective = summed_cross_entropy) -> torch.Tensor:
        """Forward and backward over this rank's micro-batches; returns the summed loss it computed
        (zero on ranks without the last stage). objective applies without pipeline parallelism."""
        self.loss.scale = scale
        total = torch.zeros((), device=self.ctx.device)
        if self.pipelined:
            inputs = torch.cat([b[0] for b in batches]).to(self.ctx.device)
            targets = torch.cat([b[1] for b in batches]).to(self.ctx.device)
            losses: list[torch.Tensor] = []
            # return_outputs=False: the last stage would otherwise keep every micro-batch's logits until the step ends
            with self.compute_precision():
                if self.stage_ids[0] == 0:
                    self.schedule.step(inputs, target=targets, losses=losses, return_outputs=False)
                else:
                    self.schedule.step(target=targets, losses=losses, return_outputs=False)
            for value in losses:
                total += value.detach().float() / scale
            return total
        for i, (inputs, targets) in enumerate(batches):
            total += self.train_microbatch(inputs, targets, scale, last=i == len(batches) - 1, objective=objective)
        return total

    def train_microbatch(self, inputs: torch.Tensor, targets: torch.Tensor, scale: float, *, last: bool,
                         objective: Objective = summed_cross_entropy) -> torch.Tensor:
        """Forward and backward of one micro-batch (single-stage models); returns its summed loss.

        Gradients sync every micro-batch, or only on the last one under gradient_sync=last_microbatch.
        """
        inputs, targets = inputs.to(self.ctx.device), targets.to(self.ctx.device)
        with _sync_context(self.modules[0], self.sync_every_microbatch or last), self.compute_precision():
            summed = self._summed(inputs, targets, objective)
        (summed * scale).backward()
        return summed.detach()

    def _summed(self, inputs: torch.Tensor, targets: torch.Tensor, objective: Objective) -> torch.Tensor:
        """One micro-batch's summed loss: by the stage in chunks (loss_chunk_tokens), else objective(logits)."""
        if self.chunked_loss and objective is summed_cross_entropy:
            return self.modules[0](inputs, targets)
        return objective(self.modules[0](inputs), targets)

    @torch.no_grad()
    def eval_loss(self, batches: list[Batch], objective: Objective = summed_cross_entropy) -> torch.Tensor:
        """Summed validation loss of this rank's batches (zero on ranks without the last stage)."""
        for module in self.modules:
            module.eval()
        total = torch.zeros((), device=self.ctx.device)
        if self.pipelined:
            self.loss.scale = 1.0
            for inputs, targets in batches:
                losses: list[torch.Tensor] = []
                inputs, targets = inputs.to(self.ctx.device), targets.to(self.ctx.device)
                with self.compute_precision():
                    if self.stage_ids[0] == 0:
                        self.schedule.eval(inputs, target=targets, losses=losses)
                    else:
                        self.schedule.eval(target=targets, losses=losses)
                total += sum(v.float() for v in losses) if losses else 0.0
        else:
            for inputs, targets in batches:
                with self.compute_precision():
                    total += self._summed(inputs.to(self.ctx.device), targets.to(self.ctx.device), objective)
        for module in self.modules:
            module.train()
        return total

    def reports_loss(self) -> bool:
        """Whether this rank's loss sums count once in the job's total (last stage, first tp rank)."""
        return self.is_last_stage and self.ctx.mesh.get_local_rank("tp") == 0

    def checkpoint_module(self) -> torch.nn.Module:
        """The module whose state dict (Hugging Face names) is this rank's part of the model."""
        return unwrap(self.model) if len(self.stages) == 1 else self.model


def global_sum(value: torch.Tensor | float, ctx: Dist, group=None) -> float:
    """Sum a scalar over a process group (the whole job by default)."""
    tensor = value.detach().clone().float() if isinstance(value, torch.Tensor) else torch.tensor(float(value))
    tensor = tensor.to(ctx.device)
    dist.all_reduce(tensor, group=group)
    return float(tensor)
