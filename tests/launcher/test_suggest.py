"""action=suggest: the layouts it finds fit, validate, rank as the model says, and include the published ones."""

from __future__ import annotations

import json
import shlex

import pytest
from llm_launch.launcher.suggest import job_with_layout, layout_problems, rank_key, search, suggest_report
from llm_launch.launcher.topology import layout_of

P5_7B = ("recipe=llama2_7b_sft_p5_fsdp",)
TRN1_70B = ("recipe=llama2_70b_cpt_trn1",)
TRN1_7B_TP8 = ("recipe=llama3_8b_cpt_trn1", "model=llama2_7b", "parallelism.tp=8", "parallelism.dp=16",
               "training.seq_len=4096")
"""The seed jobs: the FSDP p5 job, Llama 2 70B on 32 trn1 (TP 8 x PP 8), Llama 2 7B on trn1 with TP 8."""


@pytest.mark.system
@pytest.mark.parametrize("overrides", [P5_7B, TRN1_70B, TRN1_7B_TP8], ids=["p5_fsdp", "trn1_70b", "trn1_7b_tp8"])
def test_published_layout_is_suggested_or_beaten(overrides, job_for):
    job = job_for(*overrides)
    found = search(job)
    assert found, "nothing fits"
    own = layout_of(job)
    same = [s for s in found if s.layout.topology == own.topology and s.layout.data_parallel == own.data_parallel
            and s.layout.activation_checkpointing == own.activation_checkpointing
            and s.layout.micro_batch_size == own.micro_batch_size and s.layout.virtual_pp == own.virtual_pp]
    assert same, f"the published layout {own.overrides()} is missing from the {len(found)} layouts that fit"
    key = rank_key(job)
    assert key(found[0]) <= key(same[0])
    report = suggest_report(job, list(overrides))
    assert report.current_rank is not None
    assert report.current_rank == 1 or key(report.rows[0]) <= key(same[0])


@pytest.mark.system
def test_every_suggestion_fits_and_validates(job_for):
    job = job_for(*P5_7B, "plan.min_nodes=1", "plan.max_nodes=4", "plan.top=8")
    report = suggest_report(job, list(P5_7B))
    assert len(report.rows) == 8
    steps = [row.step_time_s for row in report.rows]
    assert steps == sorted(steps)
    for row in report.rows:
        assert row.memory.fits
        assert layout_problems(job_with_layout(job, row.layout)) == []
        assert 1 <= row.layout.topology.num_nodes <= 4


def test_rank_by_cost_orders_by_cost_per_billion_tokens(job_for):
    job = job_for(*P5_7B, "plan.min_nodes=1", "plan.max_nodes=8", "plan.rank_by=cost")
    costs = [s.cost_per_billion_tokens_usd for s in search(job)]
    assert costs and None not in costs
    assert costs == sorted(costs)


def test_nothing_fits_70b_on_one_g5_node(job_for):
    job = job_for("recipe=mistral_7b_sft_g5", "model=llama3_70b")
    assert search(job) == []


def test_70b_over_64_nodes_fits_and_prefers_sharding(job_for):
    job = job_for(*P5_7B, "model=llama3_70b", "plan.min_nodes=1", "plan.max_nodes=64")
    found = search(job)
    assert found
    nodes = {s.layout.topology.num_nodes for s in found}
    assert min(nodes) > 1, "a 70B model cannot train on one p5 node"
    assert all(s.memory.total <= s.memory.usable for s in found)


@pytest.mark.system
def test_cli_prints_table_and_commands_that_compose(cli_suggest, job_for):
    result, out = cli_suggest(*P5_7B, "plan.top=3")
    assert result.returncode == 0, result.stderr
    commands = [line.split(": ", 1)[1] for line in result.stdout.splitlines() if line[:2] in ("1:", "2:", "3:")]
    assert len(commands) == 3
    saved = json.loads((out / "suggest.json").read_text())
    assert [row["command"] for row in saved["suggestions"]] == commands
    first = shlex.split(commands[0])[1:]
    job = job_for(*first)
    assert layout_problems(job) == []
    assert "ranks" in result.stdout or "does not fit" in result.stdout


def test_cli_bad_node_range_is_one_line(cli_suggest):
    result, _ = cli_suggest(*P5_7B, "plan.min_nodes=8", "plan.max_nodes=2")
    assert result.returncode == 2
    assert "error: plan.min_nodes: 8 is above plan.max_nodes=2" in result.stderr
    assert "Traceback" not in result.stderr
