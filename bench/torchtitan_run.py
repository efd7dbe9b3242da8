"""torchtitan on the GPU check's bench model, for the engine / torchtitan ratio (bench/gpu_check.py's torchtitan section).

python bench/torchtitan_run.py WORK_DIR TOKENIZER_DIR --steps N --seq-len S --local-batch B --global-batch G
[--compile] [--float8]: registers the bench shape (Llama 3.2 1B's, untied, vocab 128256: the engine's
llama3_1b overrides) as the llama3 flavor `llm_launch_bench`, writes WORK_DIR/torchtitan.toml from the same
settings (FSDP on one GPU, bf16 parameters with fp32 reduction, AdamW, no activation checkpointing, no
checkpoints) and a small text dataset in torchtitan's c4_test layout, and runs torchtitan's trainer in this
process (torchrun starts it). torchtitan's API moves between releases; this follows its documented TOML keys
(https://github.com/pytorch/torchtitan/blob/main/docs/) and fails in one line where the installed version differs.
It has not run here (no GPU lent; issue 28).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

FLAVOR = "llm_launch_bench"


def register_flavor() -> None:
    import torchtitan.models.llama3 as llama3

    args_class = llama3.TransformerModelArgs
    table = getattr(llama3, "llama3_configs", None) or getattr(llama3, "llama3_args", None)
    if table is None:
        raise SystemExit("this torchtitan has neither llama3_configs nor llama3_args; cannot add the bench flavor")
    # 2048 x 16 layers, 32 heads, 8 kv heads; FFN 8192 = 256-rounded 1.5 x (2/3 x 4 x 2048).
    table[FLAVOR] = args_class(dim=2048, n_layers=16, n_heads=32, n_kv_heads=8, vocab_size=128256,
                               ffn_dim_multiplier=1.5, multiple_of=256, rope_theta=500000)


def write_inputs(work: Path, tokenizer: Path, args) -> Path:
    data = work / "tt_data"
    data.mkdir(parents=True, exist_ok=True)
    text = " ".join(f"token{i % 997} sample text for throughput" for i in range(4000))
    (data / "data.json").write_text("\n".join(json.dumps({"text": text}) for _ in range(2000)) + "\n")
    accumulate = args.global_batch // args.local_batch
    toml = f"""
[job]
dump_folder = "{work / 'tt_out'}"
description = "llm-launch gpu_check: torchtitan on the engine's bench model"

[metrics]
log_freq = 1

[model]
name = "llama3"
flavor = "{FLAVOR}"
hf_assets_path = "{tokenizer}"
{'converters = ["float8"]' if args.float8 else ''}

[optimizer]
name = "AdamW"
lr = 3e-4
eps = 1e-8

[lr_scheduler]
warmup_steps = 5

[training]
local_batch_size = {args.local_batch}
global_batch_size = {args.global_batch if accumulate > 1 else -1}
seq_len = {args.seq_len}
max_norm = 1.0
steps = {args.steps}
dataset = "c4_test"
dataset_path = "{data}"
mixed_precision_param = "bfloat16"
mixed_precision_reduce = "float32"

[parallelism]
data_parallel_replicate_degree = 1
data_parallel_shard_degree = -1
tensor_parallel_degree = 1
pipeline_parallel_degree = 1

[checkpoint]
enable = false

[activation_checkpoint]
mode = "none"

[compile]
enable = {str(args.compile).lower()}
components = ["model", "loss"]

[float8]
recipe_name = "rowwise"
filter_fqns = ["output"]
"""
    path = work / "torchtitan.toml"
    path.write_text(toml)
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("work", type=Path)
    parser.add_argument("tokenizer", type=Path)
    parser.add_argument("--steps", type=int, default=14)
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--local-batch", type=int, default=2)
    parser.add_argument("--global-batch", type=int, default=8)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--float8", action="store_true")
    args = parser.parse_args()
    register_flavor()
    config = write_inputs(args.work, args.tokenizer, args)
    from torchtitan.train import Trainer
    from torchtitan.train import main as titan_main

    sys.argv = [sys.argv[0], "--job.config_file", str(config)]
    titan_main(Trainer)


if __name__ == "__main__":
    main()
