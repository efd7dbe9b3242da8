"""What the plan says about async checkpoints: the host memory their staging copy takes per node, and the jobs it
refuses (one line each, the fix named)."""

from __future__ import annotations

import pytest
from llm_launch.launcher.memory import GIB
from llm_launch.launcher.model_math import param_counts
from llm_launch.launcher.plan import make_plan
from llm_launch.launcher.validate import validate

ASYNC = "training.checkpoint.mode=async"


def _problems(findings) -> dict[str, str]:
    return {p.field: p.message for p in findings.problems}


def test_sync_saves_stage_nothing(job_for):
    assert make_plan(job_for("recipe=llama2_7b_sft_p5_fsdp")).checkpoint_staging_per_node == 0


def test_async_staging_is_each_ranks_share_of_weights_and_adam_moments(job_for):
    job = job_for("recipe=llama2_7b_sft_p5_fsdp", ASYNC)  # tp 8 x fsdp 2 on 2 nodes
    findings, plan = validate(job)
    assert not findings.problems, findings.problems
    params = param_counts(job.model).total
    # each rank holds 1/16 of 12 bytes per parameter; a node holds 8 of the 16 shares
    assert (plan.tp, plan.dp, plan.ranks_per_node) == (8, 2, 8)
    assert plan.checkpoint_staging_per_node == pytest.approx(12 * params / 2)
    replicated = make_plan(job_for("recipe=llama2_7b_sft_p5_fsdp", ASYNC, "parallelism=ddp", "trainer.num_nodes=1"))
    assert replicated.checkpoint_staging_per_node == pytest.approx(8 * 12 * params)  # every rank its own copy


def test_async_staging_that_does_not_fit_host_memory_is_refused_with_the_fix(job_for):
    findings, _ = validate(job_for("recipe=llama2_7b_sft_p5_fsdp", ASYNC, "parallelism=ddp",
                                   "instance=ml.p4d.24xlarge"))
    message = _problems(findings)["training.checkpoint.mode"]
    assert message.startswith("async saves stage ")
    assert "GiB per node in host memory (8 ranks x " in message
    assert "more than 50% of the 1152 GiB a ml.p4d.24xlarge node has; set training.checkpoint.mode=sync" in message


def test_async_on_a_cpu_instance_counts_the_copy_in_each_ranks_memory(job_for):
    job = job_for(ASYNC)
    _, plan = validate(job)
    per_rank = plan.checkpoint_staging_per_node / plan.ranks_per_node
    budget = (plan.memory.total + per_rank / 2) / 0.9 / GIB  # room for the estimate, not for the copy
    findings, _ = validate(job_for(ASYNC, f"instance.device_memory_gib={budget}"))
    assert "copy" in _problems(findings)["training.checkpoint.mode"]
    assert "memory" not in _problems(findings)
    assert not validate(job_for("training.checkpoint.mode=sync", f"instance.device_memory_gib={budget}"))[0].problems


def test_async_is_refused_on_trainium(job_for):
    findings, _ = validate(job_for("recipe=llama3_8b_cpt_trn1", ASYNC))
    assert _problems(findings)["training.checkpoint.mode"] == (
        "async saves use DCP's async_save (the torch engine); NxD on Trainium saves synchronously; set "
        "training.checkpoint.mode=sync")


@pytest.mark.parametrize("value, message", [
    ("-1", "must be 0 or more, got -1"),
    ("sometimes", "must be a number of steps (0: only at the end) or auto, got 'sometimes'"),
])
def test_every_n_steps_takes_a_count_or_auto(job_for, value, message):
    findings, _ = validate(job_for(f"training.checkpoint.every_n_steps={value}"))
    assert _problems(findings)["training.checkpoint.every_n_steps"] == message
    assert not validate(job_for("training.checkpoint.every_n_steps=auto"))[0].problems
