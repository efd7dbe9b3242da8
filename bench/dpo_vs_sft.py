"""Step time of preference tuning (DPO) against SFT on the same model and the same sequences, side by side.

SFT trains on 2B sequences per step (global batch 2B); DPO on B pairs, i.e. the same 2B sequences
(chosen and rejected), plus the reference's forward pass over them: a frozen copy (full DPO) or the
base model with the adapters off (LoRA DPO, against LoRA SFT). Each configuration runs STEPS steps,
alternating, for REPEATS rounds; the median step_time_s after the first WARMUP steps is kept.

    python bench/dpo_vs_sft.py [--steps 12] [--repeats 2]     (CPU, 2 gloo processes, tiny Llama, fp32)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PAIRS = 4
SEQ_LEN = 128


def base_model(folder: Path) -> Path:
    from llm_launch.launcher.config.schema import ModelConfig
    from llm_launch.train.model import build_model

    model = build_model(ModelConfig(name="tiny_llama", vocab_size=2048, hidden_size=256, intermediate_size=1024,
                                    num_layers=4, num_attention_heads=8, num_key_value_heads=4,
                                    max_position_embeddings=2048), seed=5)
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(ROOT / "data" / "sample" / "tokenizer" / name, folder / name)
    return folder


def configurations(base: Path) -> dict[str, list[str]]:
    common = [f"model.pretrained_path={base}", "training.eval_every_n_steps=0", "training.log_every_n_steps=1",
              "training.checkpoint.every_n_steps=0", "training.data.valid_path=null", f"training.seq_len={SEQ_LEN}",
              "training.precision=fp32"]
    sft = ["recipe=tiny_llama_sft", f"training.global_batch_size={2 * PAIRS}", "training.micro_batch_size=2", *common]
    dpo = ["recipe=tiny_llama_dpo", f"training.global_batch_size={PAIRS}", "training.micro_batch_size=1", *common]
    lora = ["training.lora.enabled=true", "training.lora.rank=8"]
    return {"sft": sft, "dpo (frozen reference)": dpo, "sft, LoRA": [*sft, *lora],
            "dpo, LoRA (adapters off)": [*dpo, *lora]}


def step_times(overrides: list[str], out_dir: Path, steps: int) -> list[float]:
    command = [sys.executable, "-m", "llm_launch.launcher.cli", f"output_dir={out_dir}", f"training.max_steps={steps}",
               *overrides]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(overrides)} failed: {done.stdout[-2000:]} {done.stderr[-2000:]}")
    records = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["step_time_s"] for r in records if "loss" in r]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="dpo-bench-") as tmp:
        base = base_model(Path(tmp) / "base")
        configs = configurations(base)
        for repeat in range(args.repeats):
            for i, (name, overrides) in enumerate(configs.items()):
                times.setdefault(name, []).extend(
                    step_times(overrides, Path(tmp) / f"run{repeat}-{i}", args.steps)[args.warmup:])
    print(f"config: tiny Llama (5 M), CPU, 2 gloo processes (DDP), fp32, seq {SEQ_LEN}; SFT {2 * PAIRS} sequences, "
          f"DPO {PAIRS} pairs per step; {args.steps} steps x {args.repeats} rounds, first {args.warmup} left out; "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| run | median step s | vs SFT (same adapters) |")
    print("|---|---:|---:|")
    for name, values in times.items():
        baseline = times["sft, LoRA" if "LoRA" in name else "sft"]
        step = statistics.median(values)
        print(f"| {name} | {step:.3f} | {step / statistics.median(baseline):.2f}x |")


if __name__ == "__main__":
    main()
