#!/usr/bin/env bash
# Every GPU check in one run (bench/gpu_check.py lists them); results in $OUT/gpu_check.{json,md}.
# On the lent GPU machine, whose image has torch, transformers and accelerate but no registry access,
# Hydra, OmegaConf and ANTLR's runtime travel as wheels in .whl/ (docs/benchmarks.md says how).
# Elsewhere, with llm-launch installed, it runs as is: OUT=/tmp/gpu bash bench/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-outputs/gpu_check}
mkdir -p "$OUT"
if ! python3 -c 'import hydra, omegaconf' 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONPATH=${PYTHONPATH:-$PWD}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/nvidia-smi.csv" 2>&1 || true
python3 bench/gpu_check.py --out "$OUT" "$@" 2>&1 | tee "$OUT/gpu_check.log"
