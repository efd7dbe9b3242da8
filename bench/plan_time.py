"""Wall time of `llm-launch recipe=<each shipped recipe> action=plan`, beside baselines run in the same script.

Targets: every recipe's plan at most 1.0 s median, and `llm-launch recipe=llama2_70b_cpt_trn1 action=suggest`
within 5 s. Baselines: a bare Python start (the floor any CLI pays) and `import torch` (what the plan path
must not pay). Each command runs REPEATS times, alternating, and the median is kept; the load average is
printed before and after (the figures mean little on a busy machine: compare ratios to the Python start).
--compare PYTHON also times the same commands with another interpreter (e.g. the venv of an older
checkout), alternating with this one, for before/after figures from one run.
Usage: python bench/plan_time.py [--repeats N] [--compare /path/to/other/venv/bin/python]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from llm_launch.launcher.config.store import RECIPES_DIR

TARGET_S = 1.0
SUGGEST_TARGET_S = 5.0


def wall(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, cwd=tempfile.gettempdir())
    return time.perf_counter() - start


def commands(python: str, out: str) -> dict[str, list[str]]:
    cli = [python, "-P", "-m", "llm_launch.launcher.cli"]
    found = {"python -c pass": [python, "-c", "pass"], "python -c 'import torch'": [python, "-c", "import torch"]}
    for recipe in sorted(p.stem for p in RECIPES_DIR.glob("*.yaml")):
        found[f"recipe={recipe} action=plan"] = [*cli, f"recipe={recipe}", "action=plan", f"output_dir={out}/{recipe}"]
    found["recipe=llama2_70b_cpt_trn1 action=suggest"] = [*cli, "recipe=llama2_70b_cpt_trn1", "action=suggest",
                                                          f"output_dir={out}/suggest"]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--compare", help="another interpreter to time alternately (before/after)")
    args = parser.parse_args()
    out = tempfile.mkdtemp(prefix="plan-bench-")
    pythons = {"this": sys.executable, **({"compare": args.compare} if args.compare else {})}
    runs = {who: commands(python, f"{out}/{who}") for who, python in pythons.items()}
    times = {who: {name: [] for name in found} for who, found in runs.items()}
    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}; {os.cpu_count()} CPUs; "
          f"{args.repeats} runs each; {', '.join(f'{k}: {Path(v)}' for k, v in pythons.items())}", flush=True)
    for found in runs.values():
        for command in found.values():
            wall(command)  # warm the file cache (and botocore's model cache in ~/.cache/llm-launch)
    for _ in range(args.repeats):
        for name in runs["this"]:
            for who, found in runs.items():
                times[who][name].append(wall(found[name]))
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    header = " | ".join(f"{who} median s | {who} vs python start" for who in runs)
    print(f"| command | {header} | target |\n|---|{'---:|---:|' * len(runs)}---|")
    for name in runs["this"]:
        cells = []
        for who in runs:
            median = statistics.median(times[who][name])
            cells.append(f"{median:.3f} | {median / statistics.median(times[who]['python -c pass']):.1f}x")
        limit = SUGGEST_TARGET_S if "suggest" in name else TARGET_S
        median = statistics.median(times["this"][name])
        target = f"<= {limit} s: {'met' if median <= limit else 'MISSED'}" if "recipe=" in name else ""
        print(f"| {name} | {' | '.join(cells)} | {target} |")


if __name__ == "__main__":
    main()
