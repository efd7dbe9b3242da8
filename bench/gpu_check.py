"""Every GPU check in one run, for the few minutes a GPU is lent (bench/gpu_check.sh starts it).

Sections, each independent (one failing does not stop the others), each written to OUT as it ends:
  1. engine: throughput and MFU of the training engine on a Llama 3 shape of 1.5 B parameters
     (Llama 3.2 1B's published shape with untied embeddings), seq 2048, bf16, FSDP2 on one GPU, eager and with
     per-layer torch.compile; Hugging Face Trainer (accelerate) on the same model, rows, batch,
     optimizer and schedule (bench/engine_vs_hf_trainer.py's harness).
  2. memory: each engine run's measured peak (torch.cuda.max_memory_allocated, metrics.json) against
     the plan's estimate for the same job (plan.json).
  3. smoke: the allreduce smoke test (recipe=smoke_allreduce) on NCCL.
  4. resume: a 20-step CPT continued from an exported Hugging Face folder, with a checkpoint at
     step 10; a second run stopped at step 10 and resumed must log the same losses for steps
     11-20 (bf16 tolerance), and its export must load in transformers.
  5. profile: torch.profiler over 3 compiled steps of the engine (after 3 warm-up steps; bench/gpu_profile.py):
     OUT/profile/trace.json and a kernel-time table by category (matmul, attention, norm/elementwise, optimizer,
     communication, idle; bench/kernel_categories.py) in OUT/profile/kernels.{json,md}.
  6. torchtitan: torchtitan's trainer on the same shape, rows, batch and precision (bench/torchtitan_run.py, compiled,
     its wheel carried in .whl/ like Hydra's), for the engine / torchtitan tokens/s ratio.
  7. engine_chunked_loss: the compiled run with training.loss_chunk_tokens=4096 (no full fp32 logits).
  8. engine_fp8: the compiled run with training.precision=fp8 (torchao float8, rowwise; its wheel in .whl/), on H100/H200.

Writes OUT/gpu_check.json and OUT/gpu_check.md. Usage: python bench/gpu_check.py --out DIR [--quick]
(--quick: a few steps of each, to check the script itself; on CPU it also shrinks the model).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import engine_vs_hf_trainer as harness  # noqa: E402  (bench/ is not a package)

# A ~100 M Llama for the resume section: small enough that its checkpoints cost seconds.
SMALL_MODEL = ["model=llama3_8b", "model.name=llama3_small", "model.hidden_size=768", "model.intermediate_size=2048",
               "model.num_layers=8", "model.num_attention_heads=12", "model.num_key_value_heads=4",
               "model.vocab_size=32000"]
TINY_CPU_MODEL = ["model=tiny_llama"]


def launch(overrides: list[str], log: Path, timeout: float) -> subprocess.CompletedProcess:
    """One llm-launch run; its output goes to log."""
    command = [sys.executable, "-m", "llm_launch.launcher.cli", *overrides]
    with log.open("w") as out:
        result = subprocess.run(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
    if result.returncode != 0:
        tail = log.read_text()[-3000:]
        raise RuntimeError(f"llm-launch exited {result.returncode}: ...{tail}")
    return result


def read_losses(out_dir: Path) -> dict[int, float]:
    records = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records if "loss" in r}


def step_times(out_dir: Path) -> list[float]:
    records = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["step_time_s"] for r in records if "loss" in r]


class Check:
    """The results so far, rewritten to OUT after every section."""

    def __init__(self, out: Path, work: Path):
        self.out, self.work, self.results = out, work, {}

    def run(self, name: str, section, *args) -> None:
        began = time.time()
        try:
            self.results[name] = {"ok": True, **section(*args)}
        except Exception as error:  # a section's failure is a result, and the next section still runs
            self.results[name] = {"ok": False, "error": f"{type(error).__name__}: {error}"[-4000:],
                                  "traceback": traceback.format_exc()[-4000:]}
        self.results[name]["seconds"] = round(time.time() - began, 1)
        self.write()
        for log in self.work.glob("*.log"):  # kept even if the machine is taken back before the end
            shutil.copy(log, self.out / log.name)
        print(f"[gpu_check] {name}: {'ok' if self.results[name]['ok'] else 'FAILED'} "
              f"({self.results[name]['seconds']} s)", flush=True)

    def write(self) -> None:
        (self.out / "gpu_check.json").write_text(json.dumps(self.results, indent=2, default=str) + "\n")
        (self.out / "gpu_check.md").write_text(markdown(self.results))


def environment() -> dict:
    import torch

    info = {"torch": torch.__version__, "cuda": torch.version.cuda, "gpu": None, "python": sys.version.split()[0]}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    gpu_count=torch.cuda.device_count())
    for module in ("transformers", "accelerate", "peft", "hydra", "omegaconf"):
        try:
            info[module] = __import__(module).__version__
        except Exception as error:
            info[module] = f"missing: {error}"
    return info


def engine_args(gpu: bool, steps: int, micro_batch: int = 2) -> argparse.Namespace:
    args = argparse.Namespace(gpu=gpu, steps=steps, micro_batch=micro_batch, global_batch=8, nproc=1,
                              parallelism="fsdp", compile=False)
    args.seq_len = 2048 if gpu else 256
    return args


def with_overrides(overrides: list[str], extra: list[str]) -> list[str]:
    """overrides with each key of extra replaced by extra's value (Hydra refuses a key given twice)."""
    keys = {item.split("=", 1)[0] for item in extra}
    return [item for item in overrides if item.split("=", 1)[0] not in keys] + list(extra)


def engine_run(work: Path, name: str, gpu: bool, steps: int, warmup: int, compiled: bool,
               micro_batch: int = 2, extra: tuple[str, ...] = ()) -> dict:
    """One engine run of the bench model: step times, MFU, measured peak memory against the plan's."""
    args = engine_args(gpu, steps, micro_batch)
    out_dir = work / name
    overrides = with_overrides(harness.engine_overrides(args, out_dir), [f"training.compile={str(compiled).lower()}",
                                                                         *extra])
    launch(overrides, work / f"{out_dir.name}.log", timeout=240)
    times = step_times(out_dir)[warmup:]
    plan = json.loads((out_dir / "plan.json").read_text())
    summary = json.loads((out_dir / "metrics.json").read_text())
    step = statistics.median(times)
    tokens = args.global_batch * args.seq_len
    peak = plan["estimates"]["peak_tflops_per_rank"]
    per_device = tokens / step / args.nproc
    result = {
        "params_m": round(plan["params"] / 1e6, 1), "seq_len": args.seq_len, "global_batch": args.global_batch,
        "micro_batch": args.micro_batch, "steps_timed": len(times), "median_step_s": round(step, 4),
        "tokens_per_s": round(tokens / step), "mfu": round(per_device * plan["flops_per_token"] / (peak * 1e12), 4)
        if peak else None,
        "memory_measured_gib": summary.get("peak_memory_gib"),
        "memory_plan_gib": round(plan["memory_gib"]["total"], 2),
        "final_loss": summary.get("final_loss"),
    }
    if result["memory_measured_gib"]:
        result["memory_plan_over_measured"] = round(result["memory_plan_gib"] / result["memory_measured_gib"], 3)
    shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)  # GBs each; the figures are kept
    return result


def hf_trainer_run(work: Path, gpu: bool, steps: int, warmup: int) -> dict:
    """HF Trainer on the rows and job of whichever engine run (micro batch 2) came first."""
    args = engine_args(gpu, steps)
    engine_dir = next(work / name for name in ("engine_eager", "engine_compiled")
                      if (work / name / "job.yaml").exists())
    times = harness.run_hf_trainer(args, engine_dir, work / "hf_trainer", timeout=240)[warmup:]
    step = statistics.median(times)
    plan = json.loads((engine_dir / "plan.json").read_text())
    tokens = args.global_batch * args.seq_len
    peak = plan["estimates"]["peak_tflops_per_rank"]
    return {"steps_timed": len(times), "median_step_s": round(step, 4), "tokens_per_s": round(tokens / step),
            "mfu": round(tokens / step * plan["flops_per_token"] / (peak * 1e12), 4) if peak else None}


def profile(work: Path, out: Path, gpu: bool) -> dict:
    """3 profiled compiled steps of the bench model (bench/gpu_profile.py), its own run."""
    args = engine_args(gpu, steps=6)
    run_dir = work / "profile_run"
    overrides = with_overrides(harness.engine_overrides(args, run_dir), ["training.compile=true"])
    launch([*overrides, "action=render"], work / "profile_render.log", timeout=120)
    harness._torchrun(args, ROOT / "bench" / "gpu_profile.py", "cpt", str(run_dir / "job.yaml"), str(out / "profile"),
                      timeout=300)
    return json.loads((out / "profile" / "kernels.json").read_text())


TITAN_TPS = re.compile(r"tps:\s*([\d,]+)")


def torchtitan(work: Path, results: dict, gpu: bool, steps: int, warmup: int) -> dict:
    """torchtitan (compiled, bf16, FSDP on one GPU) on the engine's model, rows and batch; ratio to engine_compiled."""
    import yaml

    args = engine_args(gpu, steps)
    engine_dir = work / "engine_compiled"
    tokenizer = yaml.safe_load((engine_dir / "job.yaml").read_text())["training"]["data"]["tokenizer_path"]
    log = work / "torchtitan.log"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
               str(ROOT / "bench" / "torchtitan_run.py"), str(work / "torchtitan"), str(tokenizer), "--steps", str(steps),
               "--seq-len", str(args.seq_len), "--local-batch", str(args.micro_batch), "--global-batch",
               str(args.global_batch), "--compile"]
    with log.open("w") as sink:
        done = subprocess.run(command, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, timeout=300)
    text = log.read_text()
    if done.returncode != 0:
        raise RuntimeError(f"torchtitan exited {done.returncode}: ...{text[-3000:]}")
    rates = [int(m.replace(",", "")) for m in TITAN_TPS.findall(text)][warmup:]
    if not rates:
        raise RuntimeError(f"no tps lines in torchtitan's log: ...{text[-2000:]}")
    tps = statistics.median(rates)
    engine = results.get("engine_compiled", {}).get("tokens_per_s")
    return {"steps_timed": len(rates), "tokens_per_s": tps, "engine_over_torchtitan": round(engine / tps, 3)
            if engine else None}


def smoke(work: Path, gpu: bool) -> dict:
    out_dir = work / "smoke"
    instance = "instance=local_gpu" if gpu else "instance=local_cpu"
    launch(["recipe=smoke_allreduce", instance, "trainer.nproc_per_node=1", f"output_dir={out_dir}"],
           work / "smoke.log", timeout=180)
    return {"log_tail": (work / "smoke.log").read_text()[-1500:]}


def resume(work: Path, gpu: bool, quick: bool) -> dict:
    """Continue from an export; an interrupted-and-resumed run must match an uninterrupted one."""
    model = SMALL_MODEL if gpu else TINY_CPU_MODEL
    device = ["instance=local_gpu", "training.precision=bf16"] if gpu else ["instance=local_cpu",
                                                                          "training.precision=fp32"]
    common = [*model, *device, "trainer.nproc_per_node=1", "parallelism=fsdp", "training.seq_len=1024" if gpu
              else "training.seq_len=256", "training.global_batch_size=8", "training.micro_batch_size=4",
              "training.log_every_n_steps=1", "training.eval_every_n_steps=0",
              # warm-up over every step: a step's learning rate must not depend on max_steps (10 or 20)
              "training.schedule.warmup_steps=20", "training.checkpoint.every_n_steps=10"]
    base = work / "resume_base"
    launch([*common, "training.max_steps=5", f"output_dir={base}"], work / "resume_base.log", timeout=150)
    start = [*common, f"model.pretrained_path={base / 'hf_model'}"]
    full, parts = work / "resume_full", work / "resume_parts"
    launch([*start, "training.max_steps=20", f"output_dir={full}"], work / "resume_full.log", timeout=150)
    launch([*start, "training.max_steps=10", f"output_dir={parts}"], work / "resume_parts1.log", timeout=150)
    launch([*start, "training.max_steps=20", f"output_dir={parts}"], work / "resume_parts2.log", timeout=150)
    uninterrupted, resumed = read_losses(full), read_losses(parts)
    pairs = [(uninterrupted[s], resumed[s]) for s in range(11, 21) if s in uninterrupted and s in resumed]
    worst = max(abs(a - b) / max(abs(a), 1e-6) for a, b in pairs) if pairs else None
    tolerance = 2e-2 if gpu else 1e-5  # bf16 kernels may differ by reduction order between processes
    first_loss = read_losses(base)
    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(parts / "hf_model")
    result = {"steps_compared": len(pairs), "max_relative_loss_diff": worst, "tolerance": tolerance,
              "resumed_matches": worst is not None and len(pairs) == 10 and worst <= tolerance,
              "from_scratch_first_loss": first_loss.get(1), "continued_first_loss": uninterrupted.get(1),
              "export_params_m": round(sum(p.numel() for p in loaded.parameters()) / 1e6, 1),
              "log_resumed": "resumed from" in (work / "resume_parts2.log").read_text()}
    if not result["resumed_matches"]:
        raise AssertionError(f"resumed losses differ: {json.dumps(result)}")
    return result


def markdown(results: dict) -> str:
    lines = ["# GPU check", ""]
    env = results.get("environment", {})
    lines.append(f"GPU: {env.get('gpu')}, torch {env.get('torch')}, CUDA {env.get('cuda')}, "
                 f"transformers {env.get('transformers')}")
    lines += ["", "Llama 3 shape, 1.2 B parameters, seq 2048, global batch 8, bf16, FSDP2 on one GPU; "
              "micro batch 2 unless the run's name says otherwise.", "",
              "| run | ok | median step s | tokens/s | MFU | peak GiB measured | plan GiB |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for name in ("engine_eager", "engine_compiled", "engine_compiled_mb4", "engine_chunked_loss", "engine_fp8",
                 "hf_trainer", "torchtitan"):
        r = results.get(name)
        if r is None:
            continue
        mfu = f"{r['mfu']:.1%}" if r.get("mfu") else "n/a"
        lines.append(f"| {name} | {r['ok']} | {r.get('median_step_s', '')} | {r.get('tokens_per_s', '')} | {mfu} | "
                     f"{r.get('memory_measured_gib', '')} | {r.get('memory_plan_gib', '')} |")
    hf = results.get("hf_trainer", {})
    for name in ("engine_eager", "engine_compiled"):
        r = results.get(name, {})
        if r.get("tokens_per_s") and hf.get("tokens_per_s"):
            lines.append(f"\n{name} vs HF Trainer: {r['tokens_per_s'] / hf['tokens_per_s']:.2f}x tokens/s")
    titan = results.get("torchtitan", {})
    if titan.get("engine_over_torchtitan"):
        lines.append(f"\nengine_compiled vs torchtitan: {titan['engine_over_torchtitan']:.2f}x tokens/s")
    table = results.get("profile", {}).get("table")
    if table:
        sys.path.insert(0, str(ROOT / "bench"))
        import kernel_categories

        lines += ["", f"Kernel time over 3 compiled steps ({results['profile'].get('window_us', 0) / 1000:.0f} ms):", "",
                  kernel_categories.markdown_table(table)]
    for name in ("smoke", "resume"):
        r = results.get(name)
        if r is not None:
            shown = {k: v for k, v in r.items() if k not in ("traceback", "log_tail")}
            lines.append(f"\n{name}: `{json.dumps(shown)}`")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path("/tmp/gpu_check_work"))
    parser.add_argument("--steps", type=int, default=14)
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="a few steps of each, to check the script")
    parser.add_argument("--only", nargs="*", default=None, help="sections to run (default: all)")
    args = parser.parse_args()
    import torch

    gpu = torch.cuda.is_available()
    steps, warmup = (4, 1) if args.quick else (args.steps, args.warmup)
    args.out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    check = Check(args.out, args.work)
    sections = {
        "environment": (environment,),
        "engine_eager": (engine_run, args.work, "engine_eager", gpu, steps, warmup, False),
        "engine_compiled": (engine_run, args.work, "engine_compiled", gpu, steps, warmup, True),
        "hf_trainer": (hf_trainer_run, args.work, gpu, steps, warmup),
        "engine_compiled_mb4": (engine_run, args.work, "engine_compiled_mb4", gpu, steps, warmup, True, 4),
        "profile": (profile, args.work, args.out, gpu),
        "torchtitan": (torchtitan, args.work, check.results, gpu, steps, warmup),
        "engine_chunked_loss": (engine_run, args.work, "engine_chunked_loss", gpu, steps, warmup, True, 2,
                                ("training.loss_chunk_tokens=4096",)),
        "engine_fp8": (engine_run, args.work, "engine_fp8", gpu, steps, warmup, True, 2,
                       ("training.precision=fp8", "instance.fp8_tflops_per_accelerator=1979")),
        "smoke": (smoke, args.work, gpu),
        "resume": (resume, args.work, gpu, args.quick),
    }
    for name, (section, *section_args) in sections.items():
        if args.only is None or name in args.only or name == "environment":
            check.run(name, section, *section_args)
    print(markdown(check.results), flush=True)


if __name__ == "__main__":
    main()
