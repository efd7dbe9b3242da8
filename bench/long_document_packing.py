"""Packing one long document into rows: llm-launch's packer against the list-based packer it replaced.

The job-start packer (llm_launch.train.data.packed.RowPacker, via write_packed) cuts the concatenated token
stream into seq_len rows. The packer it replaced kept a Python list and deleted each row from its
front (`del buffer[:seq_len]`), which is quadratic in the length of one document. Both run here,
side by side on the same token ids, for one document of each size; the old one only up to
--baseline-max tokens (it takes minutes beyond). Reported: seconds and tokens/s per size, and the
ratio of the two where both ran. Linear packing keeps tokens/s flat as the document grows.
Usage: python bench/long_document_packing.py [--sizes 1000000,2000000,4000000,8000000] [--seq-len 4096]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from llm_launch.train.data.packed import write_packed


def list_packer_rows(documents, seq_len: int, eos_id: int):
    """The replaced packer (train/data/packed.py before the linear one), kept here as the baseline."""
    buffer: list[int] = []
    for tokens in documents:
        buffer.extend(tokens)
        buffer.append(eos_id)
        while len(buffer) >= seq_len:
            yield np.asarray(buffer[:seq_len], dtype=np.int64)
            del buffer[:seq_len]


def time_linear(tokens: list[int], seq_len: int, out: Path) -> float:
    started = time.perf_counter()
    index = write_packed(out, [tokens], seq_len=seq_len, eos_id=1, vocab_size=32000)
    elapsed = time.perf_counter() - started
    assert index["num_rows"] == (len(tokens) + 1) // seq_len
    return elapsed


def time_baseline(tokens: list[int], seq_len: int) -> float:
    started = time.perf_counter()
    rows = sum(1 for _ in list_packer_rows([tokens], seq_len, 1))
    elapsed = time.perf_counter() - started
    assert rows == (len(tokens) + 1) // seq_len
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,2000000,4000000,8000000")
    parser.add_argument("--seq-len", type=int, default=4096)
    parser.add_argument("--baseline-max", type=int, default=4000000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in map(int, args.sizes.split(",")):
            tokens = rng.integers(2, 32000, size=size).tolist()
            linear = time_linear(tokens, args.seq_len, Path(tmp) / f"ds{size}")
            row = {"tokens": size, "linear_s": round(linear, 3), "linear_tokens_per_s": round(size / linear)}
            if size <= args.baseline_max:
                baseline = time_baseline(tokens, args.seq_len)
                row.update(baseline_s=round(baseline, 3), speedup=round(baseline / linear, 1))
            results.append(row)
            print(json.dumps(row), flush=True)
    print(json.dumps({"seq_len": args.seq_len, "python": platform.python_version(),
                      "machine": platform.machine(), "results": results}))


if __name__ == "__main__":
    main()
