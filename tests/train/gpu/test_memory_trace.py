"""plan.memory=traced: one step of the engine's real model on fake tensors, measured by torch's FSDPMemTracker.

Tiny Llamas keep these fast; the full-size jobs are traced by bench/traced_memory.py into the
fixture that tests/launcher/test_memory_calibration.py compares the estimate with.
"""

from __future__ import annotations

import pytest
from llm_launch.launcher.model_math import param_counts
from llm_launch.launcher.plan import make_plan
from llm_launch.train.gpu.memory_trace import trace_step

FSDP4 = ("parallelism=fsdp", "trainer.nproc_per_node=4", "training.global_batch_size=16", "training.micro_batch_size=2")
"""The default tiny job on four ranks under FSDP2, two micro-batches of 2 rows per rank per step."""


def test_categories_add_up_and_the_state_is_sharded(job_for):
    job = job_for(*FSDP4)
    peak = trace_step(job)
    parts = ("parameters", "gradients", "optimizer", "activations", "temporaries")
    assert sum(peak[p] for p in parts) == pytest.approx(peak["total"])
    params = param_counts(job.model).total
    # AdamW's two fp32 moments of a quarter of the parameters (FSDP2 pads shards a little).
    assert peak["optimizer"] == pytest.approx(8 * params / 4, rel=0.05)
    assert peak["gradients"] <= 4 * params / 4 * 1.05
    assert peak["activations"] > 0


def test_no_sync_accumulation_holds_unsharded_gradients_and_the_plan_counts_them(job_for):
    synced = job_for(*FSDP4)
    unsynced = job_for(*FSDP4, "parallelism.gradient_sync=last_microbatch")
    assert make_plan(synced).gradient_accumulation == 2
    params = param_counts(synced.model).total
    every, last = trace_step(synced), trace_step(unsynced)
    assert every["gradients"] <= 4 * params / 4 * 1.05
    assert last["gradients"] >= 4 * params * 0.95, "FSDP keeps whole fp32 gradients while sync is off"
    assert make_plan(unsynced).memory.gradients == pytest.approx(4 * params)
    assert make_plan(synced).memory.gradients == pytest.approx(4 * params / 4)


@pytest.mark.system  # a traced or tracked run: over 10 s on 2 cores
def test_traced_plan_prints_categories(cli):
    result = cli(*FSDP4, "plan.memory=traced")
    assert result.returncode == 0, result.stderr
    assert "memory/device (traced)" in result.stdout
    for part in ("parameters", "gradients", "optimizer", "activations", "temporaries"):
        assert part in result.stdout
    progress = [line for line in result.stdout.splitlines() if line.startswith("llm-launch: trace ")]
    assert [line.split(": ", 2)[2] for line in progress] == [  # each phase as it starts: a 70B trace takes minutes
        "building and parallelising tiny_llama on the meta device",
        "giving the parameters fake storage; warm-up optimizer step (outside the trace)",
        "tracing micro-batch 1 of 2 (forward and backward)", "tracing micro-batch 2 of 2 (forward and backward)",
        "tracing the optimizer step", "done"]


@pytest.mark.system  # a traced or tracked run: over 10 s on 2 cores
def test_plain_ddp_holds_whole_gradients_from_the_start_like_its_buckets(job_for, cli):
    ddp = job_for("parallelism=ddp")  # the default recipe: 2 replicas of the whole model
    params = param_counts(ddp.model).total
    peak = trace_step(ddp)
    assert peak["parameters"] == pytest.approx(4 * params, rel=0.02)
    assert peak["gradients"] == pytest.approx(4 * params, rel=0.02)  # whole fp32 gradients, never freed
    assert peak["optimizer"] == pytest.approx(8 * params, rel=0.02)
    assert peak["activations"] > 0
    result = cli("parallelism=ddp", "plan.memory=traced")
    assert result.returncode == 0, result.stderr
    assert "memory/device (traced)" in result.stdout


@pytest.mark.parametrize("overrides, phrase", [
    (("recipe=llama2_70b_cpt_trn1", "plan.memory=traced"), "traced follows the torch engine"),
], ids=["trainium"])
def test_traced_refuses_what_it_cannot_trace(cli, overrides, phrase):
    result = cli(*overrides)
    assert result.returncode == 2
    assert phrase in result.stderr
    assert "Traceback" not in result.stderr


PP2 = ("parallelism=fsdp", "parallelism.pp=2", "training.global_batch_size=8", "training.micro_batch_size=1",
       "training.seq_len=256", "model.vocab_size=256", "model.num_layers=8")
"""The tiny model in two pipeline stages of four layers, 8 micro-batches per step (a small vocabulary, so the stages'
activations, not the logits, make the peak)."""


@pytest.mark.system  # each pipeline rank is traced in a process of its own: over 10 s on 2 cores
@pytest.mark.parametrize("schedule, more", [("gpipe", ("parallelism.pp_schedule=gpipe",)),
                                            ("interleaved", ("parallelism.pp_schedule=interleaved_1f1b",
                                                             "parallelism.virtual_pp=2"))])
def test_a_pipeline_rank_holds_the_micro_batches_its_schedule_keeps_in_flight(job_for, schedule, more):
    one_f_one_b = job_for(*PP2, "parallelism.pp_schedule=1f1b")
    other = job_for(*PP2, *more)
    traced_1f1b, traced_other = trace_step(one_f_one_b), trace_step(other)
    estimate_1f1b, estimate_other = make_plan(one_f_one_b).memory, make_plan(other).memory
    assert traced_1f1b["pipeline_rank"] == 0  # the first rank holds the most micro-batches of its layers
    # 1F1B holds pp = 2 micro-batches on the first rank; GPipe all 8; interleaved over 2 virtual stages per rank
    # (virtual_pp - 1) x pp + 2 (pp - 1) + 1 = 5 chunks of 2 layers, against 1F1B's 2 x 4 layers.
    grows = {"gpipe": 8 / 2, "interleaved": 5 * 2 / (2 * 4)}[schedule]
    traced_growth = traced_other["activations"] / traced_1f1b["activations"]
    estimated_growth = estimate_other.activations / estimate_1f1b.activations
    assert traced_growth == pytest.approx(grows, rel=0.15)
    assert estimated_growth == pytest.approx(traced_growth, rel=0.15)


@pytest.mark.system  # a traced run: over 10 s on 2 cores
def test_traced_plan_of_a_pipeline_job(cli):
    # the shipped tokenizer's vocabulary: the CLI checks the model covers it
    result = cli(*(o for o in PP2 if not o.startswith("model.vocab_size=")), "plan.memory=traced")
    assert result.returncode == 0, result.stderr  # refused (exit 2) before pipeline stages were traced
    assert "memory/device (traced)" in result.stdout
    progress = [line.split(": ", 2)[2] for line in result.stdout.splitlines() if line.startswith("llm-launch: trace ")]
    assert ("pipeline rank 0 of 2: tracing 3 forwards and their backwards of 3 of the step's 8 micro-batches in the "
            "1f1b schedule's order") in progress
    assert any(line.startswith("pipeline rank 1 of 2: ") for line in progress)
