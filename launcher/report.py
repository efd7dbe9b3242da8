"""Prints a plan as readable tables (rich) for people; plan.json is for scripts."""

from __future__ import annotations

from llm_launch.launcher.config.instance import LNC_ACCELERATORS
from llm_launch.launcher.data_prep import DataPrepPlan
from llm_launch.launcher.memory import GIB, MemoryEstimate
from llm_launch.launcher.plan import Plan
from llm_launch.launcher.suggest import SuggestReport
from rich import box
from rich.console import Console
from rich.table import Table


def _num(value: float | None, fmt: str = ",.0f", unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{fmt}}{unit}"


def memory_parts(mem: MemoryEstimate) -> str:
    """GiB per category: parameters, gradients, optimizer, activations (and temporaries when traced)."""
    parts = [("parameters", mem.weights), ("gradients", mem.gradients), ("optimizer", mem.optimizer),
             ("activations", mem.activations)]
    if mem.source == "traced":
        parts.append(("temporaries", mem.temporaries))
    return ", ".join(f"{name} {value / GIB:.2f}" for name, value in parts)


def _item_table(title: str, rows: list[tuple[str, str]], warnings: list[str]) -> Table:
    """A two-column table of (item, value) rows, the plan's warnings last."""
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("item", style="bold", overflow="fold")
    table.add_column("value", overflow="fold")  # long paths and URLs wrap whole, never cut with an ellipsis
    for name, value in rows:
        table.add_row(name, value)
    for warning in warnings:
        table.add_row("warning", f"[yellow]{warning}[/yellow]")
    return table


STEP_TERMS = {"compute": "compute", "bubble": "bubble", "tensor_parallel": "tp", "pipeline": "pp sends",
              "data_parallel_exposed": "dp exposed"}


def _step_terms(terms: dict[str, float]) -> str:
    """The step-time model's terms that are not zero, e.g. " (compute 1.90, tp 0.40)"."""
    parts = [f"{STEP_TERMS[name]} {seconds:,.2f}" for name, seconds in terms.items() if seconds > 0]
    return f" ({', '.join(parts)})" if parts else ""


def _elastic_rows(plan: Plan) -> list[tuple[str, str]]:
    """The layouts an elastic job runs in at its fewest and most nodes (the global batch stays)."""
    if not plan.elastic:
        return []
    el = plan.elastic

    def one(at: dict) -> str:
        return (f"{at['nodes']} node(s): {at['world_size']} ranks, dp {at['dp']}, grad accum "
                f"{at['gradient_accumulation']}, {at['memory_gib']:.2f} GiB/device")

    return [("elastic", f"{el['min_nodes']} to {el['max_nodes']} nodes (c10d rendezvous, max {el['max_restarts']} "
             f"restarts), global batch {plan.global_batch_size} kept"),
            ("  at min", one(el["at_min"])), ("  at max", one(el["at_max"]))]


def plan_table(plan: Plan) -> Table:
    """The plan as one two-column table, grouped by topic."""
    mem, est = plan.memory, plan.estimates
    lnc = f" (LNC={plan.logical_core_config})" if plan.accelerator in LNC_ACCELERATORS else ""
    stack = f", neuron.stack={plan.neuron_stack}" if plan.neuron_stack else ""
    rows = [
        ("job", f"{plan.model} on {plan.num_nodes} x {plan.instance} via {plan.cluster}"),
        ("ranks", f"{plan.world_size} = {plan.num_nodes} node(s) x {plan.ranks_per_node} ranks{lnc}"),
        ("engine", f"{plan.engine}{stack}: device {plan.device}, process group {plan.process_group}, "
                   f"compile {plan.compile_backend}"),
        ("layout", f"dp {plan.dp} ({plan.data_parallel}) x tp {plan.tp} x pp {plan.pp}"),
        ("batch", f"global {plan.global_batch_size} = micro {plan.micro_batch_size} x dp {plan.dp} x "
                  f"grad accum {plan.gradient_accumulation}; {plan.samples_per_replica} samples per replica"),
        ("pipeline", f"{plan.pipeline_microbatches} microbatches" if plan.pp > 1 else "none"),
        ("tokens", f"{plan.tokens_per_step:,} per step (seq {plan.seq_len}); "
                   f"{plan.total_tokens:,} over {plan.max_steps:,} steps"),
        ("model", f"{plan.params / 1e9:.3f} B params ({plan.params_non_embedding / 1e9:.3f} B without "
                  f"embedding); {plan.flops_per_token / 1e9:.2f} GFLOP/token (6N + 12LHQT)"),
        (f"memory/device ({mem.source})", f"{mem.total / GIB:.2f} GiB of {mem.capacity / GIB:.1f} GiB "
                                          f"({'fits' if mem.fits else 'DOES NOT FIT'} in 90%): {memory_parts(mem)}"),
        *_elastic_rows(plan),
        *([("checkpoint staging", f"{plan.checkpoint_staging_per_node / GIB:.2f} GiB of host memory per node "
            "(async saves)")] if plan.checkpoint_staging_per_node else []),
        ("peak/rank", _num(est.peak_tflops_per_rank, ",.2f", " TFLOP/s bf16")),
        (f"speed (MFU {est.assumed_mfu:.0%})", f"{_num(est.tokens_per_second)} tokens/s "
         f"({_num(est.tokens_per_second_per_device)} per device), step {_num(est.step_time_s, ',.2f', ' s')}"
         f"{_step_terms(est.step_terms)}, run {_num(est.run_hours, ',.1f', ' h')}"),
        ("cost", f"{_num(est.cost_per_hour_usd, ',.2f')} USD/h, {_num(est.cost_per_billion_tokens_usd, ',.2f')} "
                 f"USD per billion tokens, run {_num(est.run_cost_usd, ',.0f')} USD (on-demand)"),
        ("price", est.price_source),
    ]
    return _item_table(f"Plan for {plan.job_name}", rows, plan.warnings)


def _size(size: int | None) -> str:
    return "size known where the job runs" if size is None else f"{size / 1e6:,.1f} MB"


def data_prep_table(plan: DataPrepPlan) -> Table:
    """A prepare job's plan: workers, inputs, filters, deduplication and the expected output."""
    cores = "every core" if plan.workers == 0 else f"{plan.workers}"
    tasks = "one per ~task_bytes of input (counted where the job runs)" if plan.tasks is None else f"{plan.tasks}"
    rows = [("job", f"prepare on {plan.num_nodes} x {plan.instance} via {plan.cluster}"),
            ("workers", f"{plan.hosts} host(s) (one per node), each running its share of every stage's tasks "
                        f"on DataTrove's LocalPipelineExecutor with workers = {cores}"),
            ("tasks", f"{tasks} per file stage; pack: one per shard"),
            ("stages", " -> ".join(plan.stages) + " (barrier between stages; a rerun skips finished tasks)"),
            ("intermediates", plan.work_dir)]
    for source in plan.sources:
        files = "" if source.files is None else f", {source.files} file(s)"
        use = "" if source.expected_use is None else f", taking about {source.expected_use:.0%} of its input"
        rows.append((f"input {source.name}", f"{source.format} {source.path} ({_size(source.size_bytes)}{files}); "
                                            f"{source.share:.0%} of the mix{use}"))
    rows += [("filters", "; ".join(plan.filters) or "none"),
             ("dedup", plan.dedup),
             ("mix", f"{'shuffled' if plan.shuffle else 'in reading order'}, seed {plan.seed}; "
                     f"{plan.valid_fraction:.1%} of documents held out for validation")]
    upper = ("" if plan.max_tokens is None else
             f"; at most ~{plan.max_tokens:,} tokens in ~{plan.max_shards:,} shard(s) before filtering")
    rows.append(("output", f"{plan.output_dir}: train/ and valid/ rows of {plan.seq_len} tokens "
                           f"({plan.tokenizer_path}), manifest.json; shards of {plan.shard_chars:,} characters{upper}"))
    return _item_table(f"Plan for {plan.job_name} (data preparation)", rows, plan.warnings)


def print_plan(plan: Plan | DataPrepPlan, console: Console | None = None) -> None:
    """Print the plan table to the terminal."""
    table = data_prep_table(plan) if isinstance(plan, DataPrepPlan) else plan_table(plan)
    (console or Console()).print(table)



def suggest_table(report: SuggestReport) -> Table:
    """The top layouts, one row each; the commands follow the table."""
    low, high = report.nodes
    nodes = f"{low}" if low == high else f"{low}-{high}"
    title = (f"Layouts for {report.model} on {nodes} x {report.instance} that fit, by "
             f"{report.rank_by.replace('_', ' ')} ({report.fitting} of {report.searched} fit)")
    table = Table(title=title, title_justify="left", box=box.SIMPLE, pad_edge=False)
    for name in ("#", "nodes", "tp", "pp", "vpp", "dp", "recompute", "mbs", "GiB", "step s", "tok/s", "$/Btok"):
        table.add_column(name, justify="left" if name in ("dp", "recompute") else "right", overflow="fold")
    for i, row in enumerate(report.rows, start=1):
        topo, layout = row.layout.topology, row.layout
        table.add_row(str(i), str(topo.num_nodes), str(topo.tp), str(topo.pp), str(layout.virtual_pp),
                      layout.data_parallel, layout.activation_checkpointing, str(layout.micro_batch_size),
                      f"{row.memory.total / GIB:.1f}", f"{row.step_time_s:.2f}", f"{row.tokens_per_second / 1e3:,.0f}k",
                      _num(row.cost_per_billion_tokens_usd, ",.0f"))
    return table


def print_suggestions(report: SuggestReport, console: Console | None = None) -> None:
    """The suggestion table, the command of each row, where the job's own layout ranks, and notes."""
    console = console or Console()
    if not report.rows:
        console.print(f"No layout of {report.model} fits {report.instance} in the node range searched "
                      f"({report.searched} tried); raise plan.max_nodes or pick a larger instance.")
    else:
        console.print(suggest_table(report))
        for i, command in enumerate(report.commands, start=1):
            console.print(f"{i}: {command}", soft_wrap=True, highlight=False, markup=False)
    own = "does not fit" if report.current_rank is None else f"ranks {report.current_rank} of {report.fitting}"
    console.print(f"The job's own layout {own}. Prices: {report.price_source}.", highlight=False, markup=False)
    for note in report.notes:
        console.print(f"note (any layout): {note}", highlight=False, markup=False)


def sweep_table(rows: list[tuple[list[str], Plan]]) -> Table:
    """One row per job of a sweep: the overrides that vary, fits or not, memory per rank, step time, tokens/s and
    cost per billion tokens."""
    from llm_launch.launcher.sweep_summary import varying_keys

    keys = varying_keys([overrides for overrides, _ in rows])
    table = Table(title=f"Sweep: {len(rows)} jobs", title_justify="left", box=box.SIMPLE, pad_edge=False)
    for name in ("#", *keys, "fits", "GiB/rank", "step s", "tok/s", "$/Btok"):
        table.add_column(name, justify="left" if name in (*keys, "fits") else "right", overflow="fold",
                         min_width=len(name))  # a key is never folded inside a word
    for i, (overrides, plan) in enumerate(rows):
        pairs = dict(o.split("=", 1) if "=" in o else (o, "") for o in overrides)
        est = plan.estimates
        table.add_row(str(i), *(pairs.get(key, "") for key in keys), "yes" if plan.memory.fits else "no",
                      f"{plan.memory.total / GIB:.1f}", _num(est.step_time_s, ".2f"), _num(est.tokens_per_second),
                      _num(est.cost_per_billion_tokens_usd))
    return table


def print_sweep(rows: list[tuple[list[str], Plan]], console: Console | None = None) -> None:
    """The sweep's summary table (launcher/sweep_summary.py)."""
    console = console or Console()
    if not console.is_terminal:  # a log or a pipe: no terminal to fit, so no column is folded or dropped
        console = Console(width=max(console.width, 160))
    console.print(sweep_table(rows))
