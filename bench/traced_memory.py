"""Trace the calibration jobs' peak memory (plan.memory=traced) and write them as the test fixture.

tests/launcher/test_memory_calibration.py holds the analytical estimate to within +-10% of these
traced peaks. Tracing the 70B jobs takes minutes per job on two cores, so the test reads this
fixture instead of tracing; rerun this script after a change to the engine, the model code or
torch, and commit the fixture it writes.
Usage: python bench/traced_memory.py [--only ID ...] [--out tests/launcher/fixtures/traced_memory.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import transformers
from llm_launch.launcher.config import store
from llm_launch.launcher.plan import make_plan, traced_layout

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "launcher" / "fixtures" / "traced_memory.json"
P5_8B = ("recipe=llama2_7b_sft_p5_fsdp", "parallelism=fsdp", "model=llama3_8b", "training.seq_len=8192",
         "training.micro_batch_size=1")
P5_70B = ("recipe=llama2_7b_sft_p5_fsdp", "parallelism=fsdp", "model=llama3_70b", "trainer.num_nodes=4",
          "training.micro_batch_size=1", "training.global_batch_size=64")
P5_8B_LORA = ("recipe=llama2_7b_sft_p5_fsdp", "parallelism=fsdp", "model=llama3_8b", "training.lora.enabled=true",
              "model.pretrained_path=/opt/ml/input/data/model", "training.seq_len=2048", "training.micro_batch_size=2",
              "training.global_batch_size=64")
"""LoRA (the adapters train, the base is frozen) at the batch of recipe llama3_8b_dpo_p5_lora, as an sft step."""
SUGGESTED = ("recipe=llama2_7b_sft_p5_fsdp", "model.pretrained_path=null", "parallelism.data_parallel=fsdp",
             "parallelism.activation_checkpointing=none", "parallelism.gradient_sync=every_microbatch",
             "training.micro_batch_size=1")
P5_8B_PP8 = (*SUGGESTED, "model=llama3_8b", "trainer.num_nodes=1", "parallelism.tp=1", "parallelism.pp=8",
             "parallelism.virtual_pp=4", "parallelism.pp_schedule=interleaved_1f1b", "parallelism.sequence_parallel=false")
"""action=suggest's pipeline layout for 8B on one p5: pp 8, interleaved over 4 virtual stages."""
P5_70B_PP4 = (*SUGGESTED, "model=llama3_70b", "trainer.num_nodes=4", "training.global_batch_size=64",
              "parallelism.tp=8", "parallelism.pp=4", "parallelism.virtual_pp=1", "parallelism.pp_schedule=1f1b",
              "parallelism.sequence_parallel=true")
"""A row of action=suggest for 70B on four p5 (tp 8 with sequence parallelism, pp 4, 1F1B)."""
CALIBRATION_JOBS = {
    "llama2_7b_sft_p5_fsdp": ("recipe=llama2_7b_sft_p5_fsdp",),
    "mistral_7b_sft_g5": ("recipe=mistral_7b_sft_g5",),
    **{f"llama3_8b_p5_seq8192_{mode}": (*P5_8B, f"parallelism.activation_checkpointing={mode}")
       for mode in ("none", "selective", "full")},
    **{f"llama3_70b_4xp5_{mode}": (*P5_70B, f"parallelism.activation_checkpointing={mode}")
       for mode in ("none", "selective", "full")},
    "llama3_8b_p5_lora_fsdp": P5_8B_LORA,
    "llama3_8b_p5_pp8_interleaved": P5_8B_PP8,
    "llama3_70b_4xp5_tp8_pp4_1f1b": P5_70B_PP4,
}
"""Every GPU recipe, Llama 3 8B and 70B under fsdp with each activation-checkpointing mode, 8B LoRA, and pipeline
layouts that action=suggest proposes for 8B and 70B."""


def compose(overrides: tuple[str, ...]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from llm_launch.launcher.compose import to_job

    store.register()
    store.register_recipes()
    with initialize_config_dir(str(store.CONF_DIR), version_base="1.3"):
        cfg = hydra_compose(store.PRIMARY_CONFIG, overrides=list(overrides))
    return to_job(cfg, Path("/tmp/traced-memory-bench"))


def main() -> None:
    from llm_launch.train.gpu.memory_trace import trace_step

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--out", type=Path, default=FIXTURE)
    args = parser.parse_args()
    data = json.loads(args.out.read_text()) if args.out.exists() else {}
    for name, overrides in CALIBRATION_JOBS.items():
        if args.only and name not in args.only:
            continue
        job = compose(overrides)
        start = time.perf_counter()
        peak = trace_step(job)
        seconds = time.perf_counter() - start
        estimate = make_plan(job).memory.total
        data[name] = {"overrides": list(overrides), "layout": traced_layout(job), "traced_bytes": peak,
                      "seconds": round(seconds, 1),
                      "torch": torch.__version__, "transformers": transformers.__version__}
        print(f"{name}: traced {peak['total'] / 2**30:.2f} GiB, estimate {estimate / 2**30:.2f} GiB "
              f"({estimate / peak['total']:.3f}x), {seconds:.0f} s", flush=True)
        args.out.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
