"""The plan: every number a job resolves to before it runs, from its config alone."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.devices import engine_summary, uses_nxd
from llm_launch.launcher.elastic import elastic_summary
from llm_launch.launcher.memory import GIB, MemoryEstimate, Workload, estimate_layout_memory
from llm_launch.launcher.model_math import flops_per_token, param_counts
from llm_launch.launcher.prices import Price, price_of
from llm_launch.launcher.resilience import staging_bytes_per_rank
from llm_launch.launcher.step_time import peak_tflops_per_rank, throughput
from llm_launch.launcher.topology import Layout, layout_of, logical_core_config


@dataclass(frozen=True)
class Estimates:
    """Throughput, time and cost from the step-time model (compute at the assumed MFU plus recompute, pipeline
    bubble and the communication compute does not hide); None where the peak or price is unknown."""

    assumed_mfu: float
    """MFU the estimates assume (trainer.assumed_mfu)."""
    peak_tflops_per_rank: float | None
    """bf16 peak of one rank: the accelerator's figure divided by its ranks."""
    tokens_per_second: float | None = None
    """Whole-job tokens per second."""
    tokens_per_second_per_device: float | None = None
    """Tokens per second per rank, as torchtitan reports it."""
    step_time_s: float | None = None
    """Seconds per optimizer step."""
    run_hours: float | None = None
    """Hours for max_steps."""
    cost_per_hour_usd: float | None = None
    """On-demand price of all nodes per hour."""
    cost_per_billion_tokens_usd: float | None = None
    """On-demand cost of one billion training tokens."""
    run_cost_usd: float | None = None
    """On-demand cost of max_steps."""
    price_source: str = ""
    """Where the node-hour price came from (the catalog with its date, or the AWS Price List API)."""
    step_terms: dict[str, float] = field(default_factory=dict)
    """Seconds per step by term of the step-time model: compute, bubble, tensor_parallel, pipeline,
    data_parallel_exposed."""


@dataclass(frozen=True)
class Plan:
    """What a job resolves to: layout, batch arithmetic, model size, memory and estimates."""

    job_name: str
    model: str
    instance: str
    accelerator: str
    cluster: str
    num_nodes: int
    ranks_per_node: int
    logical_core_config: int
    world_size: int
    tp: int
    pp: int
    dp: int
    data_parallel: str
    global_batch_size: int
    micro_batch_size: int
    gradient_accumulation: int
    pipeline_microbatches: int
    samples_per_replica: int
    seq_len: int
    tokens_per_step: int
    max_steps: int
    total_tokens: int
    params: int
    params_non_embedding: int
    flops_per_token: float
    memory: MemoryEstimate
    estimates: Estimates
    warnings: list[str] = field(default_factory=list)
    engine: str = "torch"
    """Training engine: torch (GPU, CPU, Trainium native) or nxd (Trainium legacy); llm_launch.launcher.devices."""
    neuron_stack: str | None = None
    """On Trainium: the resolved neuron.stack (native or nxd); None elsewhere."""
    device: str = "cpu"
    """torch device type the ranks compute on (cuda, neuron, cpu; xla under NxD)."""
    process_group: str = "gloo"
    """torch.distributed backend (nccl, neuron, gloo; xla under NxD)."""
    compile_backend: str = "inductor"
    """torch.compile backend where training.compile is on (neuron on Trainium native)."""
    checkpoint_staging_per_node: float = 0.0
    """Host memory (bytes) async checkpoints stage their copy of the training state in, per node (0: sync saves)."""
    elastic: dict[str, Any] | None = None
    """With trainer.min_nodes: min_nodes, max_nodes, max_restarts and the layouts at min (at_min) and at max (at_max)
    nodes (world size, dp, gradient accumulation, memory per rank); None for a fixed node count."""

    def to_dict(self) -> dict[str, Any]:
        """Plain data for plan.json, with the memory total and verdict spelled out."""
        data = asdict(self)
        data["memory"].update(total=self.memory.total, usable=self.memory.usable, fits=self.memory.fits)
        data["memory_gib"] = {k: v / GIB for k, v in data["memory"].items() if isinstance(v, float)}
        return data


def _estimates(job: JobConfig, layout: Layout, grad_accum: int, price: Price) -> Estimates:
    """Throughput, time and cost from the step-time model (launcher/step_time.py), the one action=suggest ranks by."""
    topo = layout.topology
    mfu = job.trainer.assumed_mfu
    speed = throughput(job, layout, grad_accum, price.per_node_hour_usd)
    if speed is None:
        return Estimates(mfu, None, price_source=price.source)
    peak = peak_tflops_per_rank(job, topo.ranks_per_node)
    step, job_tps = speed.step, speed.tokens_per_second
    hours = step.total * job.training.max_steps / 3600
    per_hour = None if price.per_node_hour_usd is None else price.per_node_hour_usd * topo.num_nodes
    return Estimates(mfu, peak, job_tps, job_tps / topo.world_size, step.total, hours, per_hour,
                     speed.cost_per_billion_tokens_usd, None if per_hour is None else per_hour * hours, price.source,
                     step_terms=asdict(step))


def traced_layout(job: JobConfig) -> dict:
    """What a memory trace of the job depends on: if any of it changes, the trace must be taken again."""
    plan, par, train, model = make_plan(job), job.parallelism, job.training, job.model
    return {"model": [model.hidden_size, model.intermediate_size, model.num_layers, model.num_attention_heads,
                      model.num_key_value_heads, model.vocab_size, model.tie_word_embeddings],
            "ranks": [plan.world_size, plan.tp, plan.pp, plan.dp], "data_parallel": str(par.data_parallel),
            "activation_checkpointing": str(par.activation_checkpointing), "gradient_sync": str(par.gradient_sync),
            "sequence_parallel": par.sequence_parallel, "precision": str(train.precision),
            "batch": [train.seq_len, train.micro_batch_size, plan.gradient_accumulation],
            **({"lora": [train.lora.rank, sorted(train.lora.target_modules)]} if train.lora.enabled else {}),
            **({"pipeline": [str(par.pp_schedule), par.virtual_pp, plan.pipeline_microbatches]} if plan.pp > 1 else {})}


def gradient_accumulation(global_batch: int, micro_batch: int, dp: int) -> int:
    """Micro-batches per rank per optimizer step."""
    return max(1, global_batch // max(1, micro_batch * dp))


def rank_capacity_bytes(job: JobConfig, ranks_per_node: int) -> float:
    """Device memory of one rank: an accelerator's, shared by the ranks placed on it."""
    inst = job.instance
    return inst.device_memory_gib * GIB * inst.accelerators_per_node / max(1, ranks_per_node)


def workload_of(job: JobConfig) -> Workload:
    """What the memory estimate reads from a job besides its layout."""
    lora = job.training.lora
    return Workload(job.model, job.training.seq_len, job.training.precision, job.instance.accelerator,
                    preference=job.task == "dpo", lora=lora.enabled, nxd=uses_nxd(job), lora_rank=lora.rank,
                    lora_targets=tuple(lora.target_modules))


def estimate_job_memory(job: JobConfig, layout: Layout) -> MemoryEstimate:
    """The analytical memory estimate of one rank of a job under a layout."""
    grad_accum = gradient_accumulation(job.training.global_batch_size, layout.micro_batch_size,
                                       layout.topology.dp)
    return estimate_layout_memory(workload_of(job), layout, grad_accum,
                                  rank_capacity_bytes(job, layout.topology.ranks_per_node))


def make_plan(job: JobConfig, memory: MemoryEstimate | None = None, price: Price | None = None) -> Plan:
    """Resolve a job's numbers. Never raises on inconsistent input: validation reports that.

    memory replaces the analytical estimate (plan.memory=traced passes the traced one); price
    replaces the catalog's (plan.prices=aws).
    """
    layout = layout_of(job)
    topo = layout.topology
    train, par, inst = job.training, job.parallelism, job.instance
    dp = topo.dp
    grad_accum = gradient_accumulation(train.global_batch_size, train.micro_batch_size, dp)
    tokens_per_step = train.global_batch_size * train.seq_len
    counts = param_counts(job.model)
    flops_token = flops_per_token(job.model, train.seq_len)
    return Plan(
        job_name=job.job_name,
        model=job.model.name,
        instance=inst.name,
        accelerator=inst.accelerator,
        cluster=job.cluster.kind,
        num_nodes=topo.num_nodes,
        ranks_per_node=topo.ranks_per_node,
        logical_core_config=logical_core_config(inst),
        world_size=topo.world_size,
        tp=topo.tp,
        pp=topo.pp,
        dp=dp,
        data_parallel=par.data_parallel,
        global_batch_size=train.global_batch_size,
        micro_batch_size=train.micro_batch_size,
        gradient_accumulation=grad_accum,
        pipeline_microbatches=(par.pp_microbatches or grad_accum) if topo.pp > 1 else 1,
        samples_per_replica=train.global_batch_size // dp,
        seq_len=train.seq_len,
        tokens_per_step=tokens_per_step,
        max_steps=train.max_steps,
        total_tokens=tokens_per_step * train.max_steps,
        params=counts.total,
        params_non_embedding=counts.non_embedding,
        flops_per_token=flops_token,
        memory=memory or estimate_job_memory(job, layout),
        estimates=_estimates(job, layout, grad_accum, price or price_of(job)),
        **engine_summary(job),
        checkpoint_staging_per_node=staging_bytes_per_rank(job, layout) * topo.ranks_per_node,
        elastic=elastic_summary(job),
    )
