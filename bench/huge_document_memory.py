"""Packing one huge JSONL document at job start: peak memory and progress, in pieces against whole-document encoding.

The job-start packer (llm_launch.train.data.prepare.prepare_corpus) tokenizes a document longer than
long_text.PIECE_CHARS in bounded pieces with the same ids. Its baseline is what it did before: the whole document
in one tokenizer call (7.1 GB of RSS for a 50 M-character line). Each measurement runs in a fresh process that
reports its own peak RSS (getrusage ru_maxrss), packing the sample corpus's prose repeated into one line of the
given length with the sample tokenizer, seq_len 256. The whole-document baseline runs up to --baseline-chars
(it needs gigabytes beyond). Reported per size: peak RSS, seconds, progress lines printed, and the ratio of the
two peaks where both ran.
Usage: python bench/huge_document_memory.py [--chars 50000000] [--baseline-chars 5000000]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
corpus, tokenizer, cache, mode = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
from llm_launch.train.data import prepare
if mode == "whole":  # the baseline: no long-document pieces
    prepare.PIECE_CHARS = 1 << 62
started = time.perf_counter()
out = prepare.prepare_corpus(corpus, tokenizer, 256, cache, "text", 2048)
elapsed = time.perf_counter() - started
index = json.loads((out / "index.json").read_text())
print("RESULT " + json.dumps({"peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                              "seconds": round(elapsed, 1), "rows": index["num_rows"],
                              "documents": index["documents"]}), flush=True)
"""


def write_corpus(path: Path, chars: int) -> None:
    """One JSONL line holding `chars` characters of the sample corpus's prose, repeated."""
    lines = (ROOT / "data" / "sample" / "corpus" / "train.jsonl").read_text(encoding="utf-8").splitlines()
    prose = "\n\n".join(json.loads(line)["text"] for line in lines)
    text = (prose * (chars // len(prose) + 1))[:chars]
    path.write_text(json.dumps({"text": text}) + "\n", encoding="utf-8")


def measure(corpus: Path, mode: str, cache: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, str(corpus), str(ROOT / "data" / "sample" / "tokenizer"),
                           str(cache), mode], capture_output=True, text=True, check=True)
    lines = done.stdout.splitlines()
    result = json.loads(next(line for line in lines if line.startswith("RESULT "))[len("RESULT "):])
    result["progress_lines"] = sum(1 for line in lines if " MiB tokenized (" in line)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chars", type=int, default=50_000_000)
    parser.add_argument("--baseline-chars", type=int, default=5_000_000)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for chars in sorted({args.baseline_chars, args.chars} - {0}):
            corpus = Path(tmp) / f"one_{chars}.jsonl"
            write_corpus(corpus, chars)
            row = {"chars": chars, "mib": round(corpus.stat().st_size / 2**20, 1),
                   "pieces": measure(corpus, "pieces", Path(tmp) / f"cache_p{chars}")}
            if chars <= args.baseline_chars:
                row["whole"] = measure(corpus, "whole", Path(tmp) / f"cache_w{chars}")
                row["whole_over_pieces_peak"] = round(row["whole"]["peak_rss_mib"] / row["pieces"]["peak_rss_mib"], 1)
            corpus.unlink()
            results.append(row)
            print(json.dumps(row), flush=True)
    print(json.dumps({"python": platform.python_version(), "machine": platform.machine(), "results": results}))


if __name__ == "__main__":
    main()
