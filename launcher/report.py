"""Prints a plan as readable tables (rich) for people; plan.json is for scripts."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from launcher.data_prep import DataPrepPlan
from launcher.memory import GIB
from launcher.plan import Plan


def _num(value: float | None, fmt: str = ",.0f", unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{fmt}}{unit}"


def plan_table(plan: Plan) -> Table:
    """The plan as one two-column table, grouped by topic."""
    table = Table(title=f"Plan for {plan.job_name}", show_header=False, title_justify="left")
    table.add_column("item", style="bold")
    table.add_column("value")
    mem, est = plan.memory, plan.estimates
    lnc = f" (LNC={plan.logical_core_config})" if plan.accelerator == "trainium2" else ""
    rows = [
        ("job", f"{plan.model} on {plan.num_nodes} x {plan.instance} via {plan.cluster}"),
        ("ranks", f"{plan.world_size} = {plan.num_nodes} node(s) x {plan.ranks_per_node} ranks{lnc}"),
        ("layout", f"dp {plan.dp} ({plan.data_parallel}) x tp {plan.tp} x pp {plan.pp}"),
        ("batch", f"global {plan.global_batch_size} = micro {plan.micro_batch_size} x dp {plan.dp} x "
                  f"grad accum {plan.gradient_accumulation}; {plan.samples_per_replica} samples per replica"),
        ("pipeline", f"{plan.pipeline_microbatches} microbatches" if plan.pp > 1 else "none"),
        ("tokens", f"{plan.tokens_per_step:,} per step (seq {plan.seq_len}); "
                   f"{plan.total_tokens:,} over {plan.max_steps:,} steps"),
        ("model", f"{plan.params / 1e9:.3f} B params ({plan.params_non_embedding / 1e9:.3f} B without "
                  f"embedding); {plan.flops_per_token / 1e9:.2f} GFLOP/token (6N + 12LHQT)"),
        ("memory/device", f"{mem.total / GIB:.2f} GiB of {mem.capacity / GIB:.1f} GiB "
                          f"({'fits' if mem.fits else 'DOES NOT FIT'} in 90%): weights {mem.weights / GIB:.2f}, "
                          f"grads {mem.gradients / GIB:.2f}, optimizer {mem.optimizer / GIB:.2f}, "
                          f"activations {mem.activations / GIB:.2f}"),
        ("peak/rank", _num(est.peak_tflops_per_rank, ",.2f", " TFLOP/s bf16")),
        (f"at MFU {est.assumed_mfu:.0%}", f"{_num(est.tokens_per_second)} tokens/s "
         f"({_num(est.tokens_per_second_per_device)} per device), step {_num(est.step_time_s, ',.2f', ' s')}, "
         f"run {_num(est.run_hours, ',.1f', ' h')}"),
        ("cost", f"{_num(est.cost_per_hour_usd, ',.2f')} USD/h, {_num(est.cost_per_billion_tokens_usd, ',.2f')} "
                 f"USD per billion tokens, run {_num(est.run_cost_usd, ',.0f')} USD (on-demand)"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    for warning in plan.warnings:
        table.add_row("warning", f"[yellow]{warning}[/yellow]")
    return table


def _size(size: int | None) -> str:
    return "size known where the job runs" if size is None else f"{size / 1e6:,.1f} MB"


def data_prep_table(plan: DataPrepPlan) -> Table:
    """A prepare job's plan: workers, inputs, filters, deduplication and the expected output."""
    table = Table(title=f"Plan for {plan.job_name} (data preparation)", show_header=False, title_justify="left")
    table.add_column("item", style="bold")
    table.add_column("value")
    cores = "every core" if plan.workers == 0 else f"{plan.workers} processes"
    rows = [("job", f"prepare on {plan.num_nodes} x {plan.instance} via {plan.cluster}"),
            ("workers", f"{plan.world_size} ranks = {plan.num_nodes} node(s) x {plan.ranks_per_node}; rank 0 reads, "
                        f"filters and deduplicates on {cores}, then every rank tokenizes its share of the shards")]
    for source in plan.sources:
        files = "" if source.files is None else f", {source.files} file(s)"
        rows.append((f"input {source.name}", f"{source.format} {source.path} ({_size(source.size_bytes)}{files}); "
                                            f"{source.share:.0%} of the mix"))
    rows += [("filters", "; ".join(plan.filters) or "none"),
             ("dedup", plan.dedup),
             ("mix", f"{'shuffled' if plan.shuffle else 'in reading order'}, seed {plan.seed}; "
                     f"{plan.valid_fraction:.1%} of documents held out for validation")]
    upper = ("" if plan.max_tokens is None else
             f"; at most ~{plan.max_tokens:,} tokens in ~{plan.max_shards:,} shard(s) before filtering")
    rows.append(("output", f"{plan.output_dir}: train/ and valid/ rows of {plan.seq_len} tokens "
                           f"({plan.tokenizer_path}), manifest.json; shards of {plan.shard_chars:,} characters{upper}"))
    for name, value in rows:
        table.add_row(name, value)
    for warning in plan.warnings:
        table.add_row("warning", f"[yellow]{warning}[/yellow]")
    return table


def print_plan(plan: Plan | DataPrepPlan, console: Console | None = None) -> None:
    """Print the plan table to the terminal."""
    table = data_prep_table(plan) if isinstance(plan, DataPrepPlan) else plan_table(plan)
    (console or Console()).print(table)
