"""action=suggest: search the parallel layouts of a job, keep those that fit, rank them.

For the job's model, instance type, global batch and sequence length, and each node count from
plan.min_nodes to plan.max_nodes (default: trainer.num_nodes), the search tries every tensor-
parallel degree within a node, pipeline degrees that divide the layers, virtual stages,
data-parallel modes, activation checkpointing modes and micro-batch sizes that divide the batch.
It keeps the layouts whose memory estimate fits, ranks them by estimated step time
(launcher/step_time.py) or by cost per billion tokens (plan.rank_by), and checks the top rows
with the full validation, so every printed override line is one llm-launch accepts.
Torch-free: it runs on the plan's own arithmetic.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Iterator
from dataclasses import dataclass

from llm_launch.launcher.config.schema import GradientSync, JobConfig
from llm_launch.launcher.devices import native_neuron, uses_nxd
from llm_launch.launcher.dialect import gradient_sync_for
from llm_launch.launcher.memory import GIB, MemoryEstimate, Workload, estimate_layout_memory
from llm_launch.launcher.plan import rank_capacity_bytes, workload_of
from llm_launch.launcher.prices import Price, price_of
from llm_launch.launcher.step_time import Throughput, throughput
from llm_launch.launcher.topology import (
    Layout,
    Topology,
    data_parallel_split,
    layout_of,
    ranks_per_accelerator,
    topology_of,
)

CHECKPOINTING_MODES = ("none", "selective", "full")
MAX_VIRTUAL_PP = 4
MAX_MICRO_BATCH = 16
LAYOUT_KEYS = ("parallelism.", "trainer.num_nodes", "training.micro_batch_size", "memory")
"""Fields a layout sets: a candidate that draws a problem on one of these is dropped."""


@dataclass(frozen=True)
class Suggestion(Throughput):
    """One layout that fits: its throughput (the step-time model the plan uses) and memory."""

    layout: Layout
    memory: MemoryEstimate


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _tensor_parallel_degrees(job: JobConfig, ranks_per_node: int) -> list[int]:
    """Degrees within a node that the model's heads allow; on Trainium native also within one chip (TorchNeuron's
    best practice: https://awsdocs-neuron.readthedocs-hosted.com/en/latest/training/best-practices.html)."""
    model, nxd = job.model, uses_nxd(job)
    heads, kv = model.num_attention_heads, model.num_key_value_heads
    most = ranks_per_accelerator(job.instance) if native_neuron(job) else ranks_per_node
    degrees = []
    for tp in _divisors(ranks_per_node):
        if heads % tp or tp > most:
            continue
        if nxd and (kv % tp and tp % kv or model.vocab_size % tp):
            continue
        if not nxd and kv % tp:
            continue
        if job.training.lora.enabled and tp > 1:
            continue
        degrees.append(tp)
    return degrees


def _pipeline_choices(job: JobConfig, world_over_tp: int) -> Iterator[tuple[int, int, str]]:
    """(pp, virtual_pp, schedule) choices."""
    model = job.model
    yield 1, 1, "1f1b"
    if model.tie_word_embeddings or job.training.data.document_masking:
        return
    for pp in _divisors(model.num_layers):
        if pp == 1 or world_over_tp % pp:
            continue
        for vpp in range(1, MAX_VIRTUAL_PP + 1):
            if model.num_layers % (pp * vpp) == 0:
                yield pp, vpp, "interleaved_1f1b" if vpp > 1 else "1f1b"


def _data_parallel_modes(job: JobConfig, topo: Topology) -> list[str]:
    """Modes worth trying: hsdp only where it differs from both fsdp and ddp."""
    if uses_nxd(job):
        return ["zero1"]
    modes = ["fsdp", "ddp"] if topo.dp > 1 else ["fsdp"]
    if 1 < data_parallel_split("hsdp", topo)[1] < topo.dp:
        modes.append("hsdp")
    return modes


def _micro_batches(job: JobConfig, topo: Topology, pp: int, vpp: int) -> Iterator[tuple[int, int]]:
    """(micro batch, gradient accumulation) pairs that divide the global batch."""
    gbs = job.training.global_batch_size
    if gbs % topo.dp:
        return
    local = gbs // topo.dp
    mbs = 1
    while mbs <= min(local, MAX_MICRO_BATCH):
        if local % mbs == 0:
            accum = local // mbs
            if pp == 1 or (accum >= pp and (vpp == 1 or accum % pp == 0)):
                yield mbs, accum
        mbs *= 2


def node_range(job: JobConfig) -> range:
    """Node counts to search."""
    low = job.plan.min_nodes or job.trainer.num_nodes
    high = job.plan.max_nodes or max(low, job.trainer.num_nodes)
    if job.cluster.kind == "local":
        return range(1, 2)
    return range(low, max(low, high) + 1)


def candidates(job: JobConfig) -> Iterator[tuple[Layout, int]]:
    """Every structurally valid layout of the job, with its gradient accumulation."""
    ranks = topology_of(job).ranks_per_node
    tp_degrees = _tensor_parallel_degrees(job, ranks)
    for nodes in node_range(job):
        world = nodes * ranks
        for tp in tp_degrees:
            for pp, vpp, schedule in _pipeline_choices(job, world // tp):
                topo = Topology(nodes, ranks, tp, pp)
                if world % (tp * pp):
                    continue
                for mode in _data_parallel_modes(job, topo):
                    for mbs, accum in _micro_batches(job, topo, pp, vpp):
                        for checkpointing in CHECKPOINTING_MODES:
                            yield Layout(topo, mode, vpp, schedule, None, tp > 1, checkpointing,
                                         gradient_sync_for(mode, GradientSync.auto), mbs), accum


def _evaluate(job: JobConfig, work: Workload, layout: Layout, accum: int, price: Price) -> Suggestion | None:
    memory = estimate_layout_memory(work, layout, accum, rank_capacity_bytes(job, layout.topology.ranks_per_node))
    if not memory.fits:
        return None
    speed = throughput(job, layout, accum, price.per_node_hour_usd)  # what the plan of the row's command computes
    if speed is None:
        return None
    return Suggestion(step=speed.step, tokens_per_second=speed.tokens_per_second,
                      cost_per_billion_tokens_usd=speed.cost_per_billion_tokens_usd, layout=layout, memory=memory)


def rank_key(job: JobConfig):
    """Sort key of plan.rank_by; ties go to fewer nodes, then less memory."""
    if job.plan.rank_by == "cost":
        return lambda s: (s.cost_per_billion_tokens_usd if s.cost_per_billion_tokens_usd is not None else float("inf"),
                          s.step_time_s, s.memory.total)
    return lambda s: (s.step_time_s, s.layout.topology.num_nodes, s.memory.total)


def search(job: JobConfig, price: Price | None = None) -> list[Suggestion]:
    """Every layout that fits, best first."""
    price = price or price_of(job)
    work = workload_of(job)
    found = [s for layout, accum in candidates(job) if (s := _evaluate(job, work, layout, accum, price))]
    return sorted(found, key=rank_key(job))


def job_with_layout(job: JobConfig, layout: Layout) -> JobConfig:
    """The job as the layout's override line would compose it."""
    topo = layout.topology
    par = dataclasses.replace(job.parallelism, tp=topo.tp, pp=topo.pp, dp=None, virtual_pp=layout.virtual_pp,
                              pp_schedule=layout.pp_schedule, pp_microbatches=None,
                              data_parallel=layout.data_parallel, sequence_parallel=layout.sequence_parallel,
                              activation_checkpointing=layout.activation_checkpointing, kv_replicator=None)
    training = dataclasses.replace(job.training, micro_batch_size=layout.micro_batch_size)
    trainer = dataclasses.replace(job.trainer, num_nodes=topo.num_nodes)
    return dataclasses.replace(job, parallelism=par, training=training, trainer=trainer)


def override_line(job: JobConfig, layout: Layout) -> str:
    """What to paste after the job's own overrides to get this layout."""
    extra = []
    if job.parallelism.dp is not None:
        extra.append("parallelism.dp=null")
    if job.parallelism.pp_microbatches is not None:
        extra.append("parallelism.pp_microbatches=null")
    if job.parallelism.kv_replicator is not None:
        extra.append("parallelism.kv_replicator=null")
    return " ".join([layout.overrides(), *extra])


def layout_problems(job: JobConfig) -> list[str]:
    """Problems full validation finds in a candidate's layout fields."""
    from llm_launch.launcher.validate import validate

    findings, _ = validate(job)
    return [str(p) for p in findings.problems if p.field.startswith(LAYOUT_KEYS)]


@dataclass(frozen=True)
class SuggestReport:
    """What action=suggest prints and writes to suggest.json."""

    job_name: str
    model: str
    instance: str
    nodes: tuple[int, int]
    rank_by: str
    price_source: str
    searched: int
    fitting: int
    rows: list[Suggestion]
    commands: list[str]
    """The full command line of each row: the job's own overrides with the layout's."""
    current_rank: int | None
    """1-based rank of the job's own layout among those that fit; None when it does not fit."""
    notes: list[str]
    """Problems of the job outside its layout (they stay whatever layout is picked)."""

    def to_dict(self) -> dict:
        rows = []
        for row, command in zip(self.rows, self.commands, strict=True):
            topo = row.layout.topology
            rows.append({"num_nodes": topo.num_nodes, "tp": topo.tp, "pp": topo.pp, "virtual_pp": row.layout.virtual_pp,
                         "data_parallel": row.layout.data_parallel,
                         "activation_checkpointing": row.layout.activation_checkpointing,
                         "micro_batch_size": row.layout.micro_batch_size, "memory_gib": row.memory.total / GIB,
                         "step_time_s": row.step_time_s, "tokens_per_second": row.tokens_per_second,
                         "cost_per_billion_tokens_usd": row.cost_per_billion_tokens_usd, "command": command})
        return {"job_name": self.job_name, "model": self.model, "instance": self.instance,
                "nodes": list(self.nodes), "rank_by": self.rank_by, "price_source": self.price_source,
                "searched": self.searched, "fitting": self.fitting, "current_rank": self.current_rank,
                "notes": self.notes, "suggestions": rows}


def _without_layout_keys(overrides: list[str]) -> list[str]:
    keys = ("trainer.num_nodes=", "parallelism.tp=", "parallelism.pp=", "parallelism.virtual_pp=",
            "parallelism.pp_schedule=", "parallelism.data_parallel=", "parallelism.sequence_parallel=",
            "parallelism.activation_checkpointing=", "training.micro_batch_size=", "parallelism.dp=",
            "parallelism.pp_microbatches=", "parallelism.kv_replicator=")
    return [o for o in overrides if not o.startswith(keys)]


def suggest_report(job: JobConfig, base_overrides: list[str]) -> SuggestReport:
    """Search, validate the top rows, and say where the job's own layout stands."""
    from llm_launch.launcher.data_inputs import describe_once

    with describe_once():
        return _suggest_report(job, base_overrides)


def _suggest_report(job: JobConfig, base_overrides: list[str]) -> SuggestReport:
    from llm_launch.launcher.problems import JobProblems
    from llm_launch.launcher.validate import validate

    findings, plan = validate(job)
    own_problems = [p for p in findings.problems if p.field.startswith("plan.")]
    if plan is None or own_problems:
        raise JobProblems(own_problems or findings.problems)
    price = price_of(job)
    everything = search(job, price)
    rows = []
    for suggestion in everything:
        if not layout_problems(job_with_layout(job, suggestion.layout)):
            rows.append(suggestion)
        if len(rows) == job.plan.top:
            break
    own = layout_of(job)
    mine = _evaluate(job, workload_of(job), own, plan.gradient_accumulation, price)
    key = rank_key(job)
    current = None if mine is None else 1 + sum(1 for s in everything if key(s) < key(mine))
    keep = _without_layout_keys(base_overrides)
    commands = [" ".join(["llm-launch", *(shlex.quote(o) for o in keep), override_line(job, row.layout)])
                for row in rows]
    notes = [str(p) for p in findings.problems if not p.field.startswith(LAYOUT_KEYS)]
    span = node_range(job)
    searched = sum(1 for _ in candidates(job))
    return SuggestReport(job.job_name, job.model.name, job.instance.name, (span.start, span.stop - 1),
                         job.plan.rank_by, price.source, searched, len(everything), rows, commands, current, notes)
