#!/usr/bin/env bash
# Every Trainium 2 native-stack check in one run, the counterpart of bench/gpu_check.sh, for one trn2.48xlarge with
# TorchNeuron installed (docker/Dockerfile.neuron-native, or the Neuron DLAMI's PyTorch 2.13/2.14 environment) and
# llm-launch installed in it. It has NOT run yet: no Trainium machine was available (docs/benchmarks.md).
#
#   OUT=/tmp/neuron bash bench/neuron_check.sh
#
# Sections, each independent (one failing does not stop the others), each logged under $OUT:
#   1. smoke:  the allreduce smoke test on the neuron process group, 64 ranks (recipe=smoke_allreduce).
#   2. train:  20 steps of a 1.5 B Llama (Llama 3.2 1B's shape, untied) with TP 4 x FSDP2 16, bf16, seq 2048, on the
#              neuron device through the torch engine; checkpoint at step 10. Loss, tokens/s, MFU (158 TF/rank).
#   3. memory: the measured peak (torch.neuron.max_memory_allocated after torch.neuron.synchronize, metrics.json)
#              against the plan's estimate (plan.json) for the same job.
#   4. resume: the same job stopped at step 10 and resumed to 20 must log the losses of run 2 for steps 11-20
#              (bf16 tolerance), and its export must load in transformers.
# Results: $OUT/neuron_check.md (and each run's folder). The NEFF cache goes to $OUT/neff-cache, so a rerun compiles
# nothing new (TORCH_NEURONX_NEFF_CACHE_DIR through neuron.compile_cache_url).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-outputs/neuron_check}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
REPORT="$OUT/neuron_check.md"
STEPS=${STEPS:-20}
HALF=$((STEPS / 2))
COMMON=(instance=ml.trn2.48xlarge cluster=local "neuron.compile_cache_url=$OUT/neff-cache")
MODEL_1B=(model=llama3_8b model.name=llama3_1b_shape model.hidden_size=2048 model.intermediate_size=8192
          model.num_layers=16 model.num_attention_heads=32 model.num_key_value_heads=8 model.vocab_size=128256)
TRAIN=("${COMMON[@]}" "${MODEL_1B[@]}" parallelism.tp=4 parallelism.data_parallel=fsdp training.precision=bf16
       training.seq_len=2048 training.micro_batch_size=1 training.global_batch_size=64
       training.checkpoint.every_n_steps="$HALF" training.eval_every_n_steps=0)

{
  echo "# Trainium 2 native check ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
  echo
  python3 - <<'PY'
import importlib.metadata as md
import torch
def version(name):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return "missing"
print(f"torch {torch.__version__}, torch-neuronx {version('torch-neuronx')}, neuronx-cc {version('neuronx-cc')}, "
      f"transformers {version('transformers')}")
print(f"neuron devices seen by torch: {torch.neuron.device_count() if hasattr(torch, 'neuron') else 0}")
PY
  neuron-ls 2>/dev/null | head -5 || true
  echo
} > "$REPORT"

section() {  # section <name> <command...>: run it, record pass/fail and its log's tail
  local name=$1
  shift
  echo "== $name"
  if "$@" > "$OUT/$name.log" 2>&1; then
    echo "## $name: passed" >> "$REPORT"
  else
    echo "## $name: FAILED (exit $?); log tail:" >> "$REPORT"
    echo '```' >> "$REPORT"
    tail -n 30 "$OUT/$name.log" >> "$REPORT"
    echo '```' >> "$REPORT"
  fi
}

section smoke llm-launch recipe=smoke_allreduce "${COMMON[@]}" "output_dir=$OUT/smoke"
section train llm-launch "${TRAIN[@]}" training.max_steps="$STEPS" "output_dir=$OUT/train"
section resume_first_half llm-launch "${TRAIN[@]}" training.max_steps="$HALF" "output_dir=$OUT/resume"
section resume_second_half llm-launch "${TRAIN[@]}" training.max_steps="$STEPS" "output_dir=$OUT/resume" \
  training.checkpoint.resume=true

OUT="$OUT" STEPS="$STEPS" HALF="$HALF" python3 - >> "$REPORT" 2>&1 <<'PY'
import json
import math
import os
from pathlib import Path

out, steps, half = Path(os.environ["OUT"]), int(os.environ["STEPS"]), int(os.environ["HALF"])


def records(folder):
    path = out / folder / "metrics.jsonl"
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return {r["step"]: r for r in rows if "loss" in r}


smoke = out / "smoke" / "COMPLETE"
print("\n### smoke")
print(smoke.read_text() if smoke.is_file() else "no COMPLETE marker")

train = records("train")
print("\n### train (TP 4 x FSDP2 16, 64 ranks)")
if train:
    later = [r for s, r in train.items() if s > 1]
    print(f"loss step 1 {train[min(train)]['loss']:.4f} -> step {max(train)} {train[max(train)]['loss']:.4f}")
    if later:
        tps = sorted(r["tokens_per_s"] for r in later)[len(later) // 2]
        mfu = sorted(r["mfu"] or 0 for r in later)[len(later) // 2]
        print(f"median after step 1: {tps:,.0f} tokens/s, MFU {mfu:.1%} (158 TF/rank peak)")
summary, plan = out / "train" / "metrics.json", out / "train" / "plan.json"
print("\n### memory vs plan")
if summary.is_file() and plan.is_file():
    measured = json.loads(summary.read_text()).get("peak_memory_gib")
    estimate = json.loads(plan.read_text())["memory_gib"]["total"]
    ratio = measured / estimate if measured else float("nan")
    print(f"measured peak {measured} GiB vs estimate {estimate:.2f} GiB (ratio {ratio:.2f})")
else:
    print("missing metrics.json or plan.json")

resumed = records("resume")
print("\n### resume")
pairs = [(s, train[s]["loss"], resumed[s]["loss"]) for s in range(half + 1, steps + 1) if s in train and s in resumed]
if len(pairs) == steps - half:
    worst = max(abs(a - b) / max(abs(a), 1e-9) for _, a, b in pairs)
    print(f"steps {half + 1}-{steps}: largest relative loss difference {worst:.2e} "
          f"({'ok' if worst < 2e-2 and all(math.isfinite(b) for *_, b in pairs) else 'DIFFERS'}; bf16 tolerance 2e-2)")
else:
    print(f"only {len(pairs)} of {steps - half} resumed steps to compare")
hf = out / "resume" / "hf_model"
try:
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(hf)
    print(f"export {hf} loads in transformers")
except Exception as exc:  # noqa: BLE001  (reported, not raised: the other sections stand)
    print(f"export did not load: {exc}")
PY
cat "$REPORT"
