"""Our JobConfig -> the arguments of neuronx_distributed.trainer.neuronx_distributed_config, as typed data.

Pure: no NxD import, so every field can be tested on a machine without Neuron. The backend
turns NxdSettings into the call with the model classes it builds (settings.nxd_kwargs).
Mapping (NxD's training API,
https://awsdocs-neuron.readthedocs-hosted.com/en/latest/libraries/neuronx-distributed/api-reference-guide-training.html,
and NxDT's precision modes,
https://awsdocs-neuron.readthedocs-hosted.com/en/latest/libraries/nxd-training/general/config_overview.html):

* tensor_parallel_size / pipeline_parallel_size = parallelism.tp / pp; sequence_parallel as set.
* pipeline_config (pp > 1): NxDPPModel kwargs with pipeline_cuts from the layer split of
  pp x virtual_pp chunks (the converter's split), num_microbatches from the plan, 1F1B (NxD's
  schedule; interleaved when virtual_pp > 1), the loss as output, ZeRO-1 wrapper flags.
* optimizer_config: zero_one_enabled = data_parallel zero1; grad clipping from training.optimizer.grad_clip.
* activation_checkpoint_config: full -> each decoder layer, selective -> the core attention.
* precision: fp32; bf16 with neuron.stochastic_rounding -> "bf16SR" (bf16 weights, no master
  weights); bf16 without it -> "mixed_precision" (bf16 weights, fp32 master weights and gradient
  accumulation, which NxD allows only with ZeRO-1).
* lnc_size: the instance's logical core config (2 on trn2 by default, 1 on trn1).
* kv replication: parallelism.kv_replicator, or tp / kv_heads when tp exceeds the KV heads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.nxd_layout import default_kv_replicator
from llm_launch.launcher.plan import make_plan
from llm_launch.launcher.topology import logical_core_config
from llm_launch.train.convert.layout import pipeline_cuts

DEFAULT_SEQUENTIAL_MOVE_FACTOR = 11
PIPELINE_INPUT_NAMES = ("input_ids", "labels")


@dataclass(frozen=True)
class PipelineSettings:
    """NxDPPModel keyword arguments that come from the job (the layer classes come from the model)."""

    num_microbatches: int
    """Microbatches per pipeline step (the plan's pipeline_microbatches)."""
    virtual_pipeline_size: int
    """Model chunks per PP rank (parallelism.virtual_pp)."""
    pipeline_cuts: tuple[str, ...]
    """Name of the last decoder layer of every chunk but the last."""
    use_zero1_optimizer: bool
    """Whether the optimizer NxD wraps is ZeRO-1."""
    input_names: tuple[str, ...] = PIPELINE_INPUT_NAMES
    """Forward arguments traced by the pipeline (FX)."""
    output_loss_value_spec: tuple[bool, ...] = (True, False)
    """The model returns (loss, logits); only the loss crosses stages."""
    broadcast_and_average_loss: bool = True
    """Every rank gets the step's loss, averaged over microbatches."""
    use_optimizer_wrapper: bool = True
    """NxD wraps the optimizer so that it steps only this stage's parameters."""
    tracer_cls: str = "torch"
    """Our models are plain torch modules (not transformers classes), so torch.fx traces them."""


@dataclass(frozen=True)
class NxdSettings:
    """Everything the Neuron backend sets in NxD for one job."""

    tensor_parallel_size: int
    """TP degree."""
    pipeline_parallel_size: int
    """PP degree."""
    data_parallel_size: int
    """DP degree NxD derives from the world size (world / (tp x pp)), recorded for checks and logs."""
    sequence_parallel: bool
    """Sequence parallelism over the TP group."""
    zero_one_enabled: bool
    """ZeRO-1 optimizer sharding over DP."""
    grad_clipping: bool
    """Clip the global gradient norm."""
    max_grad_norm: float
    """Clip threshold."""
    activation_checkpoint: str | None
    """What is recomputed: 'decoder_layer' (full), 'core_attention' (selective) or None."""
    precision_mode: str
    """fp32, bf16SR or mixed_precision (NxDT's names)."""
    use_master_weights: bool
    """fp32 master weights in the optimizer (mixed_precision with ZeRO-1)."""
    use_fp32_grad_acc: bool
    """Accumulate gradients in fp32 (mixed_precision with ZeRO-1)."""
    stochastic_rounding: bool
    """bf16 stochastic rounding (the runtime's NEURON_RT_STOCHASTIC_ROUNDING_EN, set by the job's env)."""
    param_dtype: str
    """Dtype the model's parameters are created in: bfloat16 or float32."""
    kv_replicator: int
    """GQA kv_size_multiplier."""
    hw: str
    """trn1 or trn2: the KV replication order of the GQA layer and of checkpoints."""
    fused_qkv: bool
    """One fused QKV weight per rank instead of q/k/v."""
    lnc_size: int
    """Logical NeuronCore config (2 on trn2 by default)."""
    sequential_move_factor: int = DEFAULT_SEQUENTIAL_MOVE_FACTOR
    """Ranks that move weights to the device at the same time."""
    pipeline: PipelineSettings | None = None
    """NxDPPModel settings when pp > 1."""

    def nxd_kwargs(self, *, decoder_layer_cls: Any = None, core_attention_cls: Any = None,
                   leaf_module_cls: list[Any] | None = None) -> dict[str, Any]:
        """Keyword arguments of neuronx_distributed_config, given the model's classes."""
        checkpoint = {"decoder_layer": decoder_layer_cls, "core_attention": core_attention_cls,
                      None: None}[self.activation_checkpoint]
        pipeline = None
        if self.pipeline is not None:
            p = self.pipeline
            pipeline = {
                "transformer_layer_cls": decoder_layer_cls, "num_microbatches": p.num_microbatches,
                "virtual_pipeline_size": p.virtual_pipeline_size, "pipeline_cuts": list(p.pipeline_cuts),
                "output_loss_value_spec": p.output_loss_value_spec, "input_names": list(p.input_names),
                "broadcast_and_average_loss": p.broadcast_and_average_loss,
                "use_zero1_optimizer": p.use_zero1_optimizer, "use_optimizer_wrapper": p.use_optimizer_wrapper,
                "tracer_cls": p.tracer_cls, "leaf_module_cls": [c.__name__ for c in leaf_module_cls or []],
                "param_init_fn": None, "auto_partition": False,
            }
        return {
            "tensor_parallel_size": self.tensor_parallel_size,
            "pipeline_parallel_size": self.pipeline_parallel_size,
            "pipeline_config": pipeline,
            "optimizer_config": {"zero_one_enabled": self.zero_one_enabled, "grad_clipping": self.grad_clipping,
                                 "max_grad_norm": self.max_grad_norm},
            "activation_checkpoint_config": checkpoint,
            "sequence_parallel": self.sequence_parallel,
            "mixed_precision_config": {"use_master_weights": self.use_master_weights,
                                       "use_fp32_grad_acc": self.use_fp32_grad_acc,
                                       "use_master_weights_in_ckpt": False},
            "sequential_move_factor": self.sequential_move_factor,
            "lnc_size": self.lnc_size,
        }


def _precision(job: JobConfig, zero1: bool) -> tuple[str, bool, bool, str]:
    if job.training.precision == "fp32":
        return "fp32", False, False, "float32"
    if job.neuron.stochastic_rounding:
        return "bf16SR", False, False, "bfloat16"
    return "mixed_precision", zero1, zero1, "bfloat16"


def nxd_settings(job: JobConfig) -> NxdSettings:
    """The NxD settings of a Trainium job (assumes llm_launch.launcher.validate accepted it)."""
    plan = make_plan(job)
    par = job.parallelism
    zero1 = par.data_parallel == "zero1"
    mode, master, fp32_acc, dtype = _precision(job, zero1)
    pipeline = None
    if par.pp > 1:
        pipeline = PipelineSettings(num_microbatches=plan.pipeline_microbatches, virtual_pipeline_size=par.virtual_pp,
                                    pipeline_cuts=tuple(pipeline_cuts(job.model.num_layers, par.pp, par.virtual_pp)),
                                    use_zero1_optimizer=zero1)
    clip = job.training.optimizer.grad_clip
    return NxdSettings(
        tensor_parallel_size=par.tp, pipeline_parallel_size=par.pp, data_parallel_size=plan.dp,
        sequence_parallel=par.sequence_parallel, zero_one_enabled=zero1, grad_clipping=clip > 0,
        max_grad_norm=clip if clip > 0 else 1.0,
        activation_checkpoint={"full": "decoder_layer", "selective": "core_attention"}.get(
            par.activation_checkpointing),
        precision_mode=mode, use_master_weights=master, use_fp32_grad_acc=fp32_acc,
        stochastic_rounding=job.training.precision == "bf16" and job.neuron.stochastic_rounding,
        param_dtype=dtype,
        kv_replicator=par.kv_replicator or default_kv_replicator(job.model.num_key_value_heads, par.tp),
        hw="trn2" if job.instance.accelerator == "trainium2" else "trn1",
        fused_qkv=job.neuron.fused_qkv, lnc_size=logical_core_config(job.instance), pipeline=pipeline,
    )
