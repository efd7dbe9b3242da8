"""training.precision=fp8: planned on H100/H200 (FP8 peak for the decoder layers' matmuls, bf16 memory), refused elsewhere.

The refusals through the CLI (exit 2, one line) are cases of tests/launcher/test_bad_configs.py.
"""

from __future__ import annotations

import pytest
from llm_launch.launcher.model_math import param_counts
from llm_launch.launcher.plan import make_plan

P5_7B = "recipe=llama2_7b_sft_p5_fsdp"


@pytest.mark.parametrize("instance", ["ml.p5.48xlarge", "ml.p5en.48xlarge"])
def test_fp8_runs_the_decoder_matmuls_at_the_fp8_peak_and_keeps_bf16_memory(instance, job_for):
    bf16 = make_plan(job_for(P5_7B, f"instance={instance}"))
    fp8_job = job_for(P5_7B, f"instance={instance}", "training.precision=fp8")
    fp8 = make_plan(fp8_job)
    assert fp8_job.instance.fp8_tflops_per_accelerator == 1979 == 2 * 989.5
    # Rowwise scaling keeps bf16 weights, activations and all-gathers: the memory estimate is bf16's.
    assert fp8.memory.total == pytest.approx(bf16.memory.total)
    # Compute time drops by the decoder layers' share of the FLOPs run at twice the peak; the rest is unchanged.
    counts = param_counts(fp8_job.model)
    saved = 6 * counts.num_layers * counts.per_layer * (1 - 989 / 1979)
    compute_bf16, compute_fp8 = bf16.estimates.step_terms["compute"], fp8.estimates.step_terms["compute"]
    train = fp8_job.training  # FLOPs per token the bf16 plan counts (recompute included), from its compute time:
    per_token = (compute_bf16 * bf16.world_size * bf16.estimates.peak_tflops_per_rank * 1e12
                 * fp8_job.trainer.assumed_mfu / (train.global_batch_size * train.seq_len))
    assert per_token > 6 * counts.non_embedding
    assert compute_fp8 / compute_bf16 == pytest.approx((per_token - saved) / per_token, rel=1e-6)
    assert 0.55 < compute_fp8 / compute_bf16 < 0.75  # full recompute runs its forward again in bf16
    assert fp8.estimates.tokens_per_second > 1.1 * bf16.estimates.tokens_per_second
    assert fp8.estimates.peak_tflops_per_rank == bf16.estimates.peak_tflops_per_rank  # MFU stays against bf16
