"""Conversion throughput and peak memory of llm-launch-convert, beside a plain copy of the same bytes.

A synthetic ~1.1B-parameter Llama (TinyLlama-1.1B dimensions: hidden 2048, 22 layers, 32 query
and 4 KV heads, MLP 5632, vocab 32000) with random bf16 weights is written as save_pretrained-style
safetensors shards in a temporary folder. Each measured command runs in its own process, so
its peak RSS is its own (getrusage of the child), in alternating rounds (copy, hf-to-nxd,
nxd-to-hf, copy, ...; medians over --repeats rounds):
  * copy:      shutil.copyfile of every safetensors file (the I/O floor: each byte read and written once);
  * baseline:  python importing torch and the converter, doing nothing (the interpreter's share);
  * hf-to-nxd at TP 8 (KV replicated x2, trn1 layout), PP 1, and nxd-to-hf back.
The primary time is the work itself as each process reports it (the copy loop; the converter's own
"in X s", from after its imports to the last byte written), so the ratio compares moving bytes, not
starting Python; the whole process's wall and CPU seconds are shown beside it, and "work CPU s" is
a converter's process CPU less the baseline's (the copy's is its own: Python starts in ~0.02 s), the
figure that decides the ratio when the machine has no spare core. The page cache is
warmed by one read of the input first, and every command starts with nothing dirty in it (os.sync()
before each, so no command pays for writing back the one before); the machine's load averages are
printed with each round.
Usage: python bench/convert.py [--tp 8] [--repeats 3] [--threads N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
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
import resource, subprocess, sys, time
start = time.perf_counter()
out = subprocess.run(sys.argv[1:], capture_output=True, text=True)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(time.perf_counter() - start, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, out.returncode)
print(out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "")
print(out.stderr[-2000:], file=sys.stderr)
"""
COPY = """
import pathlib, shutil, sys, time
start = time.perf_counter()
folder = pathlib.Path(sys.argv[1])
folder.mkdir()
for name in sys.argv[2:]:
    shutil.copyfile(name, folder / pathlib.Path(name).name)
print(f"in {time.perf_counter() - start:.3f} s")
"""
WORK_SECONDS = re.compile(r" in ([0-9.]+) s")
WRITTEN_GB = re.compile(r"\(([0-9.]+) GB\)")


@dataclass
class Sample:
    work_s: float
    """Seconds of the work as the process reports it (imports excluded)."""
    wall_s: float
    """Seconds of the whole process."""
    cpu_s: float
    """User + system CPU seconds of the whole process."""
    rss_gib: float
    """Peak resident set of the process."""
    bytes: int
    """Tensor bytes the converter reports writing (0 where it does not say)."""


def _available_gib() -> float:
    """MemAvailable from /proc/meminfo (https://www.kernel.org/doc/html/latest/filesystems/proc.html), in GiB."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024 ** 2
    return float("nan")


def measure(command: list[str]) -> Sample:
    """One run of a command, from a small wrapper interpreter.

    Linux carries a parent's peak RSS into a forked child's ru_maxrss, so forking from this
    (torch-sized) process would inflate it.
    """
    out = subprocess.run([sys.executable, "-c", WRAPPER, *command], capture_output=True, text=True, check=True)
    first, last = (out.stdout.splitlines() + ["", ""])[:2]
    wall, cpu, rss_kib, code = first.split()
    if int(code) != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{out.stderr}")
    found, written = WORK_SECONDS.search(last), WRITTEN_GB.search(last)
    return Sample(float(found.group(1)) if found else float(wall), float(wall), float(cpu), int(rss_kib) / 1024**2,
                  int(float(written.group(1)) * 1e9) if written else 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tp", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="alternating rounds; medians are reported")
    parser.add_argument("--threads", type=int, help="converter --threads (default: the converter's own default)")
    parser.add_argument("--keep", type=Path, help="work folder to use and keep (default: a temporary one)")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="convert-bench-"))
    try:
        src = work / "hf"
        model_bytes = write_model(src) if not src.is_dir() else sum(
            f.stat().st_size for f in src.glob("*.safetensors"))
        files = sorted(src.glob("*.safetensors"))
        for path in files:  # warm the page cache so every command starts from the same state
            with path.open("rb") as handle:
                while handle.read(1 << 24):
                    pass
        kv_rep = max(1, args.tp // KV_HEADS)
        threads = ["--threads", str(args.threads)] if args.threads else []
        largest = VOCAB * HIDDEN * 2
        rows = {
            "copy (shutil.copyfile)": ([sys.executable, "-c", COPY, str(work / "copy"), *map(str, files)],
                                       model_bytes, work / "copy"),
            "baseline (import torch + converter)": ([sys.executable, "-c", "import torch, llm_launch.train.convert.cli"], 0,
                                                    None),
            f"hf-to-nxd tp{args.tp}": ([sys.executable, "-m", "llm_launch.train.convert", "hf-to-nxd", "-i", str(src), "-o",
                                        str(work / "nxd"), "--tp", str(args.tp), "--kv-replicator", str(kv_rep),
                                        "--no-progress", *threads], None, work / "nxd"),
            f"nxd-to-hf tp{args.tp}": ([sys.executable, "-m", "llm_launch.train.convert", "nxd-to-hf", "-i", str(work / "nxd"),
                                        "-o", str(work / "back"), "--no-progress", *threads], model_bytes,
                                       work / "back"),
        }
        print(f"model: {model_bytes // 2 / 1e9:.2f} B params, bf16, {model_bytes / 1e9:.2f} GB in {len(files)} "
              f"files; tp={args.tp} kv_replicator={kv_rep}; torch {torch.__version__}; {os.cpu_count()} CPUs; "
              f"{args.repeats} alternating rounds; {_available_gib():.1f} GiB of memory available (a page cache "
              "near full slows every writer: free it first)")
        samples: dict[str, list[Sample]] = {name: [] for name in rows}
        for round_index in range(args.repeats):
            before = os.getloadavg()
            for name, (command, _, output) in rows.items():
                if output is not None:
                    shutil.rmtree(output, ignore_errors=True)
                os.sync()
                samples[name].append(measure(command))
            after = os.getloadavg()
            print(f"round {round_index + 1}: load average {before[0]:.1f} {before[1]:.1f} {before[2]:.1f} before, "
                  f"{after[0]:.1f} {after[1]:.1f} {after[2]:.1f} after; work s: "
                  + ", ".join(f"{name.split()[0]} {s[-1].work_s:.2f}" for name, s in samples.items()))
        copy_rate = model_bytes / statistics.median(s.work_s for s in samples["copy (shutil.copyfile)"])
        base_cpu = statistics.median(s.cpu_s for s in samples["baseline (import torch + converter)"])
        print("\n| command | work s | GB/s | vs copy (GB/s ratio) | process wall s | process CPU s | work CPU s | "
              "peak RSS GiB |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for name, (_, nbytes, _) in rows.items():
            nbytes = samples[name][0].bytes if nbytes is None else nbytes
            work_s = statistics.median(s.work_s for s in samples[name])
            wall = statistics.median(s.wall_s for s in samples[name])
            cpu = statistics.median(s.cpu_s for s in samples[name])
            rss = max(s.rss_gib for s in samples[name])
            rate = f"{nbytes / 1e9 / work_s:.2f}" if nbytes else "–"
            ratio = f"{nbytes / work_s / copy_rate:.2f}x" if nbytes else "–"
            work_cpu = f"{cpu - base_cpu:.2f}" if "-to-" in name else f"{cpu:.2f}" if name.startswith("copy") else "–"
            print(f"| {name} | {work_s:.2f} | {rate} | {ratio} | {wall:.2f} | {cpu:.2f} | {work_cpu} | {rss:.2f} |")
        limit = (1.5 * 1024**3 + largest) / 1024**3
        worst = max(s.rss_gib for name in rows if "-to-" in name for s in samples[name])
        print(f"\npeak RSS limit 1.5 GiB + largest tensor ({largest / 1024**3:.2f} GiB) = {limit:.2f} GiB: "
              f"{'met' if worst <= limit else 'NOT met'} (worst {worst:.2f} GiB)")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
