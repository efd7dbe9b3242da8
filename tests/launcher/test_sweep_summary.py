"""A sweep (llm-launch -m) ends with one table (issue 23): a row per job with the overrides that vary, whether it
fits, memory per rank, step time, tokens/s and cost, the same figures as each job's plan.json."""

from __future__ import annotations

import json
import subprocess
import sys

from llm_launch.launcher.sweep_summary import varying_keys


def test_only_the_overrides_that_vary_become_columns():
    jobs = [["action=plan", "parallelism.tp=8", "trainer.num_nodes=2"], ["action=plan", "parallelism.tp=32",
                                                                          "trainer.num_nodes=2"]]
    assert varying_keys(jobs) == ["parallelism.tp"]
    assert varying_keys([["action=plan", "seed=1"], ["action=plan"]]) == ["seed"]


def test_a_sweep_ends_with_one_row_per_job(tmp_path):
    done = subprocess.run([sys.executable, "-m", "llm_launch.launcher.cli", "-m", "action=plan",
                           "recipe=llama3_8b_cpt_trn1", "parallelism.tp=8,32", "trainer.num_nodes=2",
                           f"output_dir={tmp_path / 'sweep'}"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Sweep: 2 jobs"))
    assert start > max(i for i, line in enumerate(lines) if "plan written to" in line)  # after every job
    header = lines[start + 2].split()
    assert header == ["#", "parallelism.tp", "fits", "GiB/rank", "step", "s", "tok/s", "$/Btok"], lines[start:]
    rows = [line.split() for line in lines[start + 4:start + 6]]
    for job, (row, tp) in enumerate(zip(rows, ("8", "32"), strict=True)):
        plan = json.loads((tmp_path / "sweep-sweep" / str(job) / "plan.json").read_text())
        est = plan["estimates"]
        assert row == [str(job), tp, "yes" if plan["memory"]["fits"] else "no",
                       f"{plan['memory_gib']['total']:.1f}", f"{est['step_time_s']:.2f}",
                       f"{est['tokens_per_second']:,.0f}", f"{est['cost_per_billion_tokens_usd']:,.0f}"], lines[start:]
