"""How long the training loop stands still per checkpoint: training.checkpoint.mode=sync against async, in one run.

Both sides train the same 33.6 M-parameter Llama (bench/engine_vs_hf_trainer.py's "33m": 512 wide, 8 layers,
vocab 8192; seq 512 unless --seq-len) on this machine's CPU with the same data, steps and checkpoint interval,
one after the other.
The loop's stall per save is what the trainer records in metrics.jsonl (checkpoint_stall_s: from the save call to
the loop's next step; for async that covers waiting for the previous save, staging the state to host memory and
starting the background write). The last save of each run (at max_steps, which the run waits for) is left out.
Reports the median stall per save of each mode and their ratio, with the checkpoint's size and the step time.

    python bench/async_checkpoint.py [--steps 12] [--every 3] [--nproc 1] [--seq-len 512]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL_33M = ["model=tiny_llama", "model.name=llama_33m", "model.hidden_size=512", "model.intermediate_size=1536",
             "model.num_layers=8", "model.vocab_size=8192"]


def run(mode: str, out_dir: Path, *, steps: int, every: int, nproc: int, seq_len: int) -> dict:
    """Train one side; returns its stalls per save, step times and checkpoint size."""
    command = [sys.executable, "-m", "llm_launch.launcher.cli", f"output_dir={out_dir}", *MODEL_33M,
               f"training.seq_len={seq_len}", "training.global_batch_size=2", "training.micro_batch_size=1",
               "training.precision=fp32", f"training.max_steps={steps}", "training.log_every_n_steps=1",
               "training.eval_every_n_steps=0", "training.data.valid_path=null", "training.schedule.warmup_steps=5",
               f"training.checkpoint.every_n_steps={every}", f"training.checkpoint.mode={mode}",
               "training.checkpoint.keep_last=2", f"trainer.nproc_per_node={nproc}", "parallelism=ddp"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"{mode} run failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    records = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    stalls = [r["checkpoint_stall_s"] for r in records if "checkpoint_stall_s" in r and r["step"] < steps]
    step_times = [r["step_time_s"] for r in records if "loss" in r and r["step"] > 1]
    latest = out_dir / "checkpoints" / (out_dir / "checkpoints" / "latest").read_text().strip()
    return {"mode": mode, "stalls_s": stalls, "median_stall_s": statistics.median(stalls),
            "median_step_s": statistics.median(step_times),
            "checkpoint_mib": sum(p.stat().st_size for p in latest.iterdir()) / 2**20,
            "losses": {r["step"]: r["loss"] for r in records if "loss" in r}}


def compare(steps: int = 12, every: int = 3, nproc: int = 1, seq_len: int = 512) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        sides = {mode: run(mode, Path(tmp) / mode, steps=steps, every=every, nproc=nproc, seq_len=seq_len)
                 for mode in ("sync", "async")}
    sides["ratio"] = sides["async"]["median_stall_s"] / sides["sync"]["median_stall_s"]
    return sides


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--every", type=int, default=3)
    parser.add_argument("--nproc", type=int, default=1)
    parser.add_argument("--seq-len", type=int, default=512)
    args = parser.parse_args()
    result = compare(args.steps, args.every, args.nproc, args.seq_len)
    for mode in ("sync", "async"):
        side = result[mode]
        print(f"{mode:5}: median stall per save {side['median_stall_s']:.3f} s (saves: "
              f"{', '.join(f'{s:.3f}' for s in side['stalls_s'])}); median step {side['median_step_s']:.3f} s; "
              f"checkpoint {side['checkpoint_mib']:.0f} MiB")
    print(f"async / sync stall: {result['ratio']:.3f}")
    print("same losses:", result["sync"]["losses"] == result["async"]["losses"])


if __name__ == "__main__":
    main()
