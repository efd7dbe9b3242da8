"""Training throughput of llm-launch's engine against Hugging Face Trainer (accelerate), side by side.

Same model (a Llama built from our config), same packed rows in the same order, same
global and micro batch, same AdamW and learning-rate schedule, same precision; both run as
one process per device with the same world size. Each side runs STEPS steps, ALTERNATING
for REPEATS rounds; the median step time over steps after the first WARMUP is kept. A step's
time covers reading its batches, forward, backward, clipping and the optimizer update (the
engine's step_time_s; for Trainer, the time between two on_step_end callbacks).

CPU (default):  python bench/engine_vs_hf_trainer.py
GPU (H100/H200): python bench/engine_vs_hf_trainer.py --gpu
  (--gpu: Llama 3 architecture of about 1B parameters, seq 2048, bf16, global batch 8, micro 2)
MFU uses the plan's formula (launcher.model_math) and the instance's bf16 peak; none on CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CPU_MODEL = ["model=tiny_llama"]
GPU_MODEL = [  # Llama 3.2 1B's published shape, untied so pipeline layouts stay possible
    "model=llama3_8b", "model.name=llama3_1b", "model.hidden_size=2048", "model.intermediate_size=8192",
    "model.num_layers=16", "model.num_attention_heads=32", "model.num_key_value_heads=8",
]


def engine_overrides(args, out_dir: Path) -> list[str]:
    common = [f"output_dir={out_dir}", f"training.max_steps={args.steps}", "training.log_every_n_steps=1",
              "training.eval_every_n_steps=0", "training.checkpoint.every_n_steps=0", "training.data.valid_path=null",
              f"training.seq_len={args.seq_len}", f"training.global_batch_size={args.global_batch}",
              f"training.micro_batch_size={args.micro_batch}", "training.schedule.warmup_steps=5",
              f"trainer.nproc_per_node={args.nproc}", f"parallelism={args.parallelism}"]
    if args.gpu:
        return [*GPU_MODEL, "instance=local_gpu", "training.precision=bf16", *common]
    return [*CPU_MODEL, "training.precision=fp32", *common]


def run_engine(args, out_dir: Path) -> list[float]:
    """Step times of one llm-launch run (its own metrics.jsonl)."""
    command = [sys.executable, "-m", "launcher.cli", *engine_overrides(args, out_dir)]
    subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
    records = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["step_time_s"] for r in records if "loss" in r]


HF_SCRIPT = r'''
import json, sys, time, torch
from transformers import Trainer, TrainingArguments, TrainerCallback
from launcher.jobfile import read_job
from train.data.loader import StepBatches
from train.data.packed import PackedDataset
from train.model import build_model

job = read_job(sys.argv[1]); packed = PackedDataset.open(sys.argv[2]); out = sys.argv[3]
cfg = job.training
# The engine's rows, in the engine's order: step s reads global-batch rows s*G .. (s+1)*G.
order = StepBatches(packed, seed=cfg.seed, global_batch=cfg.global_batch_size, micro_batch=cfg.global_batch_size,
                    dp_rank=0, dp_size=1)
rows = [r for s in range(cfg.max_steps) for r in order.micro_batches(s)[0][0]]

class Rows(torch.utils.data.Dataset):
    def __len__(self): return len(rows)
    def __getitem__(self, i): return {"input_ids": rows[i], "labels": rows[i]}

class StepTimes(TrainerCallback):
    """Time from one optimizer step's end to the next: fetching the batches, forward, backward, update."""
    def __init__(self): self.times, self.last = [], None
    def on_train_begin(self, *a, **k): self.last = time.perf_counter()
    def on_step_end(self, *a, **k):
        if torch.cuda.is_available(): torch.cuda.synchronize()
        now = time.perf_counter()
        self.times.append(now - self.last)
        self.last = now

world = int(__import__("os").environ.get("WORLD_SIZE", 1))
model = build_model(job.model, cfg.seed)
bf16 = cfg.precision == "bf16"
arguments = TrainingArguments(
    output_dir=out, max_steps=cfg.max_steps, per_device_train_batch_size=cfg.micro_batch_size,
    gradient_accumulation_steps=cfg.global_batch_size // (cfg.micro_batch_size * world),
    learning_rate=cfg.optimizer.lr, weight_decay=cfg.optimizer.weight_decay, adam_beta1=cfg.optimizer.beta1,
    adam_beta2=cfg.optimizer.beta2, adam_epsilon=cfg.optimizer.eps, max_grad_norm=cfg.optimizer.grad_clip,
    lr_scheduler_type="cosine", warmup_steps=cfg.schedule.warmup_steps, bf16=bf16, logging_steps=1,
    save_strategy="no", report_to=[], dataloader_drop_last=True, seed=cfg.seed, use_cpu=not torch.cuda.is_available(),
    ddp_backend="nccl" if torch.cuda.is_available() else "gloo", disable_tqdm=True)
timer = StepTimes()
trainer = Trainer(model=model, args=arguments, train_dataset=Rows(), callbacks=[timer])
trainer.train()
if int(__import__("os").environ.get("RANK", 0)) == 0:
    json.dump(timer.times, open(out + "/step_times.json", "w"))
'''


def run_hf_trainer(args, engine_dir: Path, out_dir: Path, timeout: float | None = None) -> list[float]:
    """Step times of Hugging Face Trainer on the rows the engine packed, under torchrun."""
    packed = next(p for p in (engine_dir / "data").iterdir() if p.name.startswith("train"))
    script = out_dir / "hf_trainer_run.py"
    out_dir.mkdir(parents=True, exist_ok=True)
    script.write_text(HF_SCRIPT)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}",
               str(script), str(engine_dir / "job.yaml"), str(packed), str(out_dir)]
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)  # keep carried wheels
    env = dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 1) // args.nproc)))
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    if done.returncode != 0:
        first = done.stderr.find("Traceback")  # the root cause, before torchrun's summary
        raise RuntimeError(f"HF Trainer run exited {done.returncode}: {done.stderr[first:first + 3000]}")
    return json.loads((out_dir / "step_times.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--nproc", type=int, default=None)
    parser.add_argument("--parallelism", default=None)
    args = parser.parse_args()
    if args.gpu:
        args.seq_len, args.global_batch, args.micro_batch = 2048, 8, 2
        args.nproc, args.parallelism = args.nproc or 1, args.parallelism or "fsdp"
    else:
        args.seq_len, args.global_batch, args.micro_batch = 256, 8, 4
        args.nproc, args.parallelism = args.nproc or 2, args.parallelism or "ddp"

    engine_times: list[float] = []
    hf_times: list[float] = []
    with tempfile.TemporaryDirectory(prefix="engine-bench-") as tmp:
        for repeat in range(args.repeats):
            engine_dir = Path(tmp) / f"engine{repeat}"
            engine_times += run_engine(args, engine_dir)[args.warmup:]
            hf_times += run_hf_trainer(args, engine_dir, Path(tmp) / f"hf{repeat}")[args.warmup:]
        job_yaml = (Path(tmp) / "engine0" / "job.yaml")
        from launcher.jobfile import read_job
        from launcher.plan import make_plan

        plan = make_plan(read_job(job_yaml))
    tokens = args.global_batch * args.seq_len
    peak = plan.estimates.peak_tflops_per_rank
    print(f"config: {'GPU' if args.gpu else 'CPU'}, {plan.params / 1e6:.1f} M params, seq {args.seq_len}, "
          f"global batch {args.global_batch}, micro {args.micro_batch}, {args.nproc} process(es), "
          f"{args.parallelism}, steps {args.steps} x {args.repeats} (first {args.warmup} of each left out)")
    print("| trainer | median step s | tokens/s | tokens/s/device | MFU | vs HF Trainer |")
    print("|---|---:|---:|---:|---:|---:|")
    hf_step = statistics.median(hf_times)
    for name, times in (("llm-launch engine", engine_times), ("HF Trainer (accelerate)", hf_times)):
        step = statistics.median(times)
        per_device = tokens / step / args.nproc
        mfu = f"{per_device * plan.flops_per_token / (peak * 1e12):.1%}" if peak else "n/a"
        print(f"| {name} | {step:.3f} | {tokens / step:,.0f} | {per_device:,.0f} | {mfu} | {hf_step / step:.2f}x |")


if __name__ == "__main__":
    main()
