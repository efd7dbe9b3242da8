"""Wall time of `llm-launch action=plan`, beside baselines run in the same script.

action=suggest (70B over 1-64 nodes) has its own target, 2 s. Baselines: a bare Python start (the
floor any CLI pays) and `import torch` (what the plan
path must not pay). Each command runs REPEATS times, alternating, and the median is kept.
Usage: python bench/plan_time.py [--repeats N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time

TARGET_S = 0.5
SUGGEST_TARGET_S = 2.0


def wall(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=11)
    args = parser.parse_args()
    out = tempfile.mkdtemp(prefix="plan-bench-")
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -c 'import torch'": [sys.executable, "-c", "import torch"],
        "llm-launch action=plan (default)": [
            sys.executable, "-m", "llm_launch.launcher.cli", "action=plan", f"output_dir={out}/a"],
        "llm-launch recipe=llama2_70b_cpt_trn1 action=plan": [
            sys.executable, "-m", "llm_launch.launcher.cli", "recipe=llama2_70b_cpt_trn1", "action=plan", f"output_dir={out}/b"],
        "llm-launch (70B on p5) action=suggest over 1-64 nodes": [
            sys.executable, "-m", "llm_launch.launcher.cli", "recipe=llama2_7b_sft_p5_fsdp", "model=llama3_70b", "action=suggest",
            "plan.min_nodes=1", "plan.max_nodes=64", f"output_dir={out}/c"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for command in commands.values():
        wall(command)  # warm the file cache
    for _ in range(args.repeats):
        for name, command in commands.items():
            times[name].append(wall(command))
    floor = statistics.median(times["python -c pass"])
    print("| command | median wall s | vs python start | target |\n|---|---:|---:|---|")
    for name, samples in times.items():
        median = statistics.median(samples)
        limit = SUGGEST_TARGET_S if "suggest" in name else TARGET_S
        target = f"<= {limit} s: {'met' if median <= limit else 'MISSED'}" if "llm-launch" in name else ""
        print(f"| {name} | {median:.3f} | {median / floor:.1f}x | {target} |")


if __name__ == "__main__":
    main()
