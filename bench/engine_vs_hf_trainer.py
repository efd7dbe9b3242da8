"""Training throughput of llm-launch's engine against Hugging Face Trainer (accelerate), side by side.

Same model (a Llama built from our config), same packed rows in the same order, same
global and micro batch, same AdamW and learning-rate schedule, same precision; both run as
one process per device with the same world size and the same intra-op threads. Each side runs
STEPS steps, in alternating rounds (engine, HF; then HF, engine; ...) for REPEATS rounds.

Both sides are timed the same way: rank 0 stamps wall time and its process's CPU time at the end
of every optimizer step (the engine: when GpuBackend.step returns; HF: on_step_end), so a step
covers everything from the previous step's end to its own (the previous step's metrics and
logging, reading its batches, forward, backward, clipping, the update and the loss all-reduce).
The first WARMUP steps of each round are left out; medians over all rounds are reported. CPU
time per step on rank 0 is the primary figure (on a shared machine wall time moves with the load);
wall time is shown beside it, with the load averages of every round.

CPU (default):  python bench/engine_vs_hf_trainer.py [--model tiny|33m]
GPU (H100/H200): python bench/engine_vs_hf_trainer.py --gpu
  (--gpu: Llama 3 architecture of about 1B parameters, seq 2048, bf16, global batch 8, micro 2)
MFU uses the plan's formula (llm_launch.launcher.model_math) and the instance's bf16 peak; none on CPU.
--compile compiles both sides (the engine per layer, HF Trainer's torch_compile). BENCH_PROFILE=DIR writes
rank 0's torch.profiler op table for steps 4-8 of each side to DIR (see StepProfile).
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

CPU_MODELS = {  # name: (overrides, seq_len)
    "tiny": (["model=tiny_llama"], 256),
    # 33.6 M parameters: 512 wide, 8 layers, vocab 8192 (the shipped tokenizer's 2048 ids fit)
    "33m": (["model=tiny_llama", "model.name=llama_33m", "model.hidden_size=512", "model.intermediate_size=1536",
             "model.num_layers=8", "model.vocab_size=8192"], 512),
}
GPU_MODEL = [  # Llama 3.2 1B's published shape, untied so pipeline layouts stay possible
    "model=llama3_8b", "model.name=llama3_1b", "model.hidden_size=2048", "model.intermediate_size=8192",
    "model.num_layers=16", "model.num_attention_heads=32", "model.num_key_value_heads=8",
]


def engine_overrides(args, out_dir: Path) -> list[str]:
    common = [f"output_dir={out_dir}", f"training.max_steps={args.steps}", "training.log_every_n_steps=1",
              "training.eval_every_n_steps=0", "training.checkpoint.every_n_steps=0", "training.data.valid_path=null",
              f"training.seq_len={args.seq_len}", f"training.global_batch_size={args.global_batch}",
              f"training.micro_batch_size={args.micro_batch}", "training.schedule.warmup_steps=5",
              f"trainer.nproc_per_node={args.nproc}", f"parallelism={args.parallelism}",
              f"training.compile={str(args.compile).lower()}"]
    if args.gpu:
        return [*GPU_MODEL, "instance=local_gpu", "training.precision=bf16", *common]
    return [*CPU_MODELS[getattr(args, "model", "tiny")][0], "training.precision=fp32", *common]


def run_engine(args, out_dir: Path) -> list[float]:
    """Step times of one llm-launch run (its own metrics.jsonl)."""
    command = [sys.executable, "-m", "llm_launch.launcher.cli", *engine_overrides(args, out_dir)]
    subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
    records = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["step_time_s"] for r in records if "loss" in r]


PROFILER = r'''
import os, resource, torch
class StepProfile:
    """With BENCH_PROFILE=DIR: torch.profiler over steps 4-8 on rank 0; its op table (grouped by input shape
    with BENCH_PROFILE_SHAPES=1) and the minor page faults per step are written to DIR/<side>.txt."""
    def __init__(self, name):
        self.name, self.steps, self.profiler, self.faults = name, 0, None, 0
        self.folder = os.environ.get("BENCH_PROFILE") if int(os.environ.get("RANK", 0)) == 0 else None
        self.shapes = bool(os.environ.get("BENCH_PROFILE_SHAPES"))
    def step_ended(self):
        self.steps += 1
        if not self.folder:
            return
        if self.steps == 3:
            self.faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            self.profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                                   record_shapes=self.shapes)
            self.profiler.__enter__()
        elif self.steps == 8 and self.profiler is not None:
            self.profiler.__exit__(None, None, None)
            faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - self.faults) / 5
            table = self.profiler.key_averages(group_by_input_shape=self.shapes).table(
                sort_by="self_cpu_time_total", row_limit=40)
            with open(os.path.join(self.folder, self.name + ".txt"), "w") as out:
                out.write(f"minor page faults per step: {faults:.0f}\n{table}")
'''

ENGINE_SCRIPT = PROFILER + r'''
import json, os, sys, time
import llm_launch.train.gpu.backend as backend
from llm_launch.train.entry import run_entrypoint

stamps = []
original = backend.GpuBackend.step
profile = StepProfile("engine")

def timed(self, *args, **kwargs):
    """Stamp the end of every optimizer step, as the HF side's on_step_end does."""
    result = original(self, *args, **kwargs)
    stamps.append((time.perf_counter(), time.process_time()))
    profile.step_ended()
    return result

backend.GpuBackend.step = timed
run_entrypoint(sys.argv[1], ["--job", sys.argv[2]])
if int(os.environ.get("RANK", 0)) == 0:
    json.dump(stamps, open(sys.argv[3], "w"))
'''


def _torchrun(args, script: Path, *script_args: str, timeout: float | None = None) -> None:
    """Run a script under torchrun with the launcher's intra-op threads; one-line error with its root cause."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}",
               str(script), *script_args]
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)  # keep carried wheels
    env = dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 1) // args.nproc)))
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)
    if done.returncode != 0:
        summary = done.stderr.find("Traceback (most recent call last):\n  File \"<frozen runpy>\"")
        ranks = done.stderr[:summary] if summary > 0 else done.stderr  # the ranks' own output, before torchrun's
        raise RuntimeError(f"{script.name} exited {done.returncode}: {ranks[-3000:]}")


def _intervals(stamps_file: Path) -> list[tuple[float, float]]:
    """(wall s, CPU s) of every step after the first, from end-of-step stamps."""
    stamps = json.loads(stamps_file.read_text())
    return [(b[0] - a[0], b[1] - a[1]) for a, b in zip(stamps, stamps[1:], strict=False)]


def timed_engine(args, out_dir: Path) -> list[tuple[float, float]]:
    """(wall s, CPU s on rank 0) per step of the engine: the launcher renders the job, torchrun runs it."""
    command = [sys.executable, "-m", "llm_launch.launcher.cli", *engine_overrides(args, out_dir), "action=render"]
    subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
    script = out_dir / "engine_timed.py"
    script.write_text(ENGINE_SCRIPT)
    _torchrun(args, script, "cpt", str(out_dir / "job.yaml"), str(out_dir / "step_stamps.json"))
    return _intervals(out_dir / "step_stamps.json")


HF_SCRIPT = PROFILER + r'''
import json, sys, time, torch
from transformers import Trainer, TrainingArguments, TrainerCallback
from llm_launch.launcher.jobfile import read_job
from llm_launch.train.data.loader import StepBatches
from llm_launch.train.data.packed import PackedDataset
from llm_launch.train.model import build_model

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
    """Wall and CPU time at the start and at every optimizer step's end."""
    def __init__(self): self.stamps, self.profile = [], StepProfile("hf")
    def on_train_begin(self, *a, **k): self.stamps.append((time.perf_counter(), time.process_time()))
    def on_step_end(self, *a, **k):
        if torch.cuda.is_available(): torch.cuda.synchronize()
        self.stamps.append((time.perf_counter(), time.process_time()))
        self.profile.step_ended()

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
    ddp_backend="nccl" if torch.cuda.is_available() else "gloo", disable_tqdm=True, torch_compile=cfg.compile)
timer = StepTimes()
trainer = Trainer(model=model, args=arguments, train_dataset=Rows(), callbacks=[timer])
trainer.train()
if int(__import__("os").environ.get("RANK", 0)) == 0:
    json.dump(timer.stamps, open(out + "/step_stamps.json", "w"))
'''


def timed_hf_trainer(args, engine_dir: Path, out_dir: Path, timeout: float | None = None) -> list[tuple[float, float]]:
    """(wall s, CPU s on rank 0) per step of Hugging Face Trainer on the rows the engine packed."""
    packed = next(p for p in (engine_dir / "data").iterdir() if p.name.startswith("train"))
    script = out_dir / "hf_trainer_run.py"
    out_dir.mkdir(parents=True, exist_ok=True)
    script.write_text(HF_SCRIPT)
    _torchrun(args, script, str(engine_dir / "job.yaml"), str(packed), str(out_dir), timeout=timeout)
    return _intervals(out_dir / "step_stamps.json")[1:]  # its first stamp is the start of training


def run_hf_trainer(args, engine_dir: Path, out_dir: Path, timeout: float | None = None) -> list[float]:
    """Wall seconds per step of Hugging Face Trainer (bench/gpu_check.py's entry point)."""
    return [wall for wall, _ in timed_hf_trainer(args, engine_dir, out_dir, timeout)]


def _median(pairs: list[tuple[float, float]], index: int) -> float:
    return statistics.median(pair[index] for pair in pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--model", choices=list(CPU_MODELS), default="tiny", help="CPU model (default tiny)")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument("--nproc", type=int, default=None)
    parser.add_argument("--parallelism", default=None)
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile on both sides (engine: training.compile, per layer; HF: torch_compile)")
    args = parser.parse_args()
    if args.gpu:
        args.seq_len, args.global_batch, args.micro_batch = 2048, 8, 2
        args.nproc, args.parallelism = args.nproc or 1, args.parallelism or "fsdp"
    else:
        args.seq_len, args.global_batch, args.micro_batch = CPU_MODELS[args.model][1], 8, 4
        args.nproc, args.parallelism = args.nproc or 2, args.parallelism or "ddp"

    engine: list[tuple[float, float]] = []
    hf: list[tuple[float, float]] = []
    rounds = []
    with tempfile.TemporaryDirectory(prefix="engine-bench-") as tmp:
        for repeat in range(args.repeats):
            load_before = os.getloadavg()
            engine_dir = Path(tmp) / f"engine{repeat}"
            order = ["engine", "hf"] if repeat % 2 == 0 else ["hf", "engine"]
            got = {}
            for side in order:
                if side == "engine":
                    got[side] = timed_engine(args, engine_dir)[args.warmup - 1:]
                else:  # on the rows of the first round's engine run (the same rows every round)
                    times = timed_hf_trainer(args, Path(tmp) / "engine0", Path(tmp) / f"hf{repeat}")
                    got[side] = times[args.warmup - 1:]
            engine += got["engine"]
            hf += got["hf"]
            rounds.append((repeat + 1, " then ".join(order), load_before, os.getloadavg(),
                           _median(got["hf"], 1) / _median(got["engine"], 1),
                           _median(got["hf"], 0) / _median(got["engine"], 0)))
        from llm_launch.launcher.jobfile import read_job
        from llm_launch.launcher.plan import make_plan

        plan = make_plan(read_job(Path(tmp) / "engine0" / "job.yaml"))
    tokens = args.global_batch * args.seq_len
    peak = plan.estimates.peak_tflops_per_rank
    print(f"config: {'GPU' if args.gpu else 'CPU'}, {plan.params / 1e6:.1f} M params, seq {args.seq_len}, "
          f"global batch {args.global_batch}, micro {args.micro_batch}, {args.nproc} process(es), "
          f"{args.parallelism}, {os.cpu_count()} CPUs, steps {args.steps} x {args.repeats} alternating rounds "
          f"(first {args.warmup} of each left out)")
    print("| round | order | load avg before (1/5/15 min) | load avg after | HF/engine CPU per step | HF/engine wall |")
    print("|---|---|---|---|---:|---:|")
    for number, order, before, after, cpu_ratio, wall_ratio in rounds:
        print(f"| {number} | {order} | {before[0]:.1f} / {before[1]:.1f} / {before[2]:.1f} | "
              f"{after[0]:.1f} / {after[1]:.1f} / {after[2]:.1f} | {cpu_ratio:.2f}x | {wall_ratio:.2f}x |")
    print()
    print("| trainer | CPU s/step (rank 0) | vs HF (CPU) | wall s/step | vs HF (wall) | tokens/s (wall) | MFU |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    hf_cpu, hf_wall = _median(hf, 1), _median(hf, 0)
    for name, pairs in (("llm-launch engine", engine), ("HF Trainer (accelerate)", hf)):
        cpu, wall = _median(pairs, 1), _median(pairs, 0)
        per_device = tokens / wall / args.nproc
        mfu = f"{per_device * plan.flops_per_token / (peak * 1e12):.1%}" if peak else "n/a"
        print(f"| {name} | {cpu:.3f} | {hf_cpu / cpu:.2f}x | {wall:.3f} | {hf_wall / wall:.2f}x | "
              f"{tokens / wall:,.0f} | {mfu} |")


if __name__ == "__main__":
    main()
