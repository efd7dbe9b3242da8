"""Conversion throughput and peak memory of llm-launch-convert, beside a plain copy of the same bytes.

A synthetic ~1.1B-parameter Llama (TinyLlama-1.1B dimensions: hidden 2048, 22 layers, 32 query
and 4 KV heads, MLP 5632, vocab 32000) with random bf16 weights is written as save_pretrained-style
safetensors shards in a temporary folder. Each measured command runs in its own process, so
its peak RSS is its own (os.wait4):
  * copy:     shutil.copyfile of every safetensors file (the I/O floor: read and write each byte once);
  * baseline: python importing torch and the converter, doing nothing (the interpreter's share of RSS);
  * hf-to-nxd at TP 8 (KV replicated x2, trn1 layout), PP 1, and nxd-to-hf back.
The page cache is warmed by one read of the input first. Throughput is model bytes / wall time.
Usage: python bench/convert.py [--tp 8] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

HIDDEN, LAYERS, HEADS, KV_HEADS, MLP, VOCAB = 2048, 22, 32, 4, 5632, 32000
HEAD_DIM = HIDDEN // HEADS


def config() -> dict:
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": VOCAB, "hidden_size": HIDDEN,
            "intermediate_size": MLP, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
            "num_key_value_heads": KV_HEADS, "max_position_embeddings": 2048, "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0, "tie_word_embeddings": False, "torch_dtype": "bfloat16"}


def write_model(folder: Path) -> int:
    """Random bf16 weights, one safetensors shard per few layers; returns the bytes written."""
    folder.mkdir(parents=True)
    gen = torch.Generator().manual_seed(0)
    kv = KV_HEADS * HEAD_DIM

    def rand(*shape):
        return (torch.randn(*shape, generator=gen) * 0.02).to(torch.bfloat16)

    groups = [["model.embed_tokens.weight"]] + [list(range(i, min(i + 4, LAYERS))) for i in range(0, LAYERS, 4)]
    weight_map, total = {}, 0
    for index, group in enumerate(groups + [["model.norm.weight", "lm_head.weight"]]):
        state = {}
        for item in group:
            if item == "model.embed_tokens.weight" or item == "lm_head.weight":
                state[item] = rand(VOCAB, HIDDEN)
            elif item == "model.norm.weight":
                state[item] = torch.ones(HIDDEN, dtype=torch.bfloat16)
            else:
                p = f"model.layers.{item}."
                state.update({p + "input_layernorm.weight": torch.ones(HIDDEN, dtype=torch.bfloat16),
                              p + "post_attention_layernorm.weight": torch.ones(HIDDEN, dtype=torch.bfloat16),
                              p + "self_attn.q_proj.weight": rand(HIDDEN, HIDDEN),
                              p + "self_attn.k_proj.weight": rand(kv, HIDDEN),
                              p + "self_attn.v_proj.weight": rand(kv, HIDDEN),
                              p + "self_attn.o_proj.weight": rand(HIDDEN, HIDDEN),
                              p + "mlp.gate_proj.weight": rand(MLP, HIDDEN),
                              p + "mlp.up_proj.weight": rand(MLP, HIDDEN),
                              p + "mlp.down_proj.weight": rand(HIDDEN, MLP)})
        name = f"model-{index + 1:05d}-of-{len(groups) + 1:05d}.safetensors"
        save_file(state, str(folder / name), metadata={"format": "pt"})
        weight_map.update({key: name for key in state})
        total += sum(t.numel() * t.element_size() for t in state.values())
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": total},
                                                                     "weight_map": weight_map}))
    (folder / "config.json").write_text(json.dumps(config()))
    return total


WRAPPER = """
import os, resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, code)
"""


def measure(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (GiB) of one command.

    It is started from a small wrapper interpreter: Linux carries a parent's peak RSS into a
    forked child's ru_maxrss, so forking from this (torch-sized) process would inflate it.
    """
    out = subprocess.run([sys.executable, "-c", WRAPPER, *command], capture_output=True, text=True, check=True)
    elapsed, max_rss_kib, code = out.stdout.split()
    if int(code) != 0:
        raise SystemExit(f"failed: {' '.join(command)}")
    return float(elapsed), int(max_rss_kib) / 1024**2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tp", type=int, default=8)
    parser.add_argument("--keep", type=Path, help="work folder to use and keep (default: a temporary one)")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="convert-bench-"))
    try:
        src = work / "hf"
        model_bytes = write_model(src)
        params = model_bytes // 2
        files = sorted(src.glob("*.safetensors"))
        for path in files:  # warm the page cache so every command starts from the same state
            with path.open("rb") as handle:
                while handle.read(1 << 24):
                    pass
        copy_code = ("import shutil, sys, pathlib; d = pathlib.Path(sys.argv[1]); d.mkdir(); "
                     "[shutil.copyfile(f, d / pathlib.Path(f).name) for f in sys.argv[2:]]")
        kv_rep = max(1, args.tp // KV_HEADS)
        rows = {
            "copy (shutil.copyfile)": [sys.executable, "-c", copy_code, str(work / "copy"), *map(str, files)],
            "baseline (import torch + converter)": [sys.executable, "-c", "import torch, train.convert.cli"],
            f"hf-to-nxd tp{args.tp}": [sys.executable, "-m", "train.convert", "hf-to-nxd", "-i", str(src), "-o",
                                       str(work / "nxd"), "--tp", str(args.tp), "--kv-replicator", str(kv_rep),
                                       "--no-progress"],
            f"nxd-to-hf tp{args.tp}": [sys.executable, "-m", "train.convert", "nxd-to-hf", "-i", str(work / "nxd"),
                                       "-o", str(work / "back"), "--no-progress"],
        }
        print(f"model: {params / 1e9:.2f} B params, bf16, {model_bytes / 1e9:.2f} GB in {len(files)} files; "
              f"tp={args.tp} kv_replicator={kv_rep}; torch {torch.__version__}; {os.cpu_count()} CPUs")
        print(f"{'command':40s} {'wall s':>8s} {'GB/s':>8s} {'peak RSS GiB':>13s} {'vs copy':>8s}")
        copy_s = None
        for name, command in rows.items():
            elapsed, rss = measure(command)
            copy_s = copy_s or elapsed
            rate = "" if name.startswith("baseline") else f"{model_bytes / 1e9 / elapsed:8.2f}"
            ratio = "" if name.startswith("baseline") else f"{elapsed / copy_s:7.2f}x"
            print(f"{name:40s} {elapsed:8.2f} {rate:>8s} {rss:13.2f} {ratio:>8s}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
