"""The allreduce smoke test: a real 2-process gloo run through the CLI, and its bandwidth arithmetic."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from llm_launch.launcher import PROJECT_ROOT
from llm_launch.train.smoke import CPU_SIZES, bus_bandwidth


def test_bus_bandwidth_matches_nccl_tests():
    assert bus_bandwidth(10.0, 1) == 0.0
    assert bus_bandwidth(10.0, 2) == 10.0
    assert bus_bandwidth(10.0, 8) == pytest.approx(17.5)


@pytest.mark.system
def test_two_process_gloo_run_via_the_cli(tmp_path):
    out = tmp_path / "smoke"
    done = subprocess.run([sys.executable, "-m", "llm_launch.launcher.cli", "recipe=smoke_allreduce", f"output_dir={out}"],
                          capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "smoke: allreduce OK on 2 ranks (gloo): sum == world size" in done.stdout
    summary = json.loads((out / "COMPLETE").read_text())
    assert summary["ok"] and summary["world_size"] == 2 and summary["backend"] == "gloo"
    assert [r["bytes"] for r in summary["results"]] == list(CPU_SIZES)
    for result in summary["results"]:
        assert result["time_ms"] > 0
        assert result["algbw_gbps"] == pytest.approx(result["bytes"] / (result["time_ms"] / 1e3) / 1e9)
        assert result["busbw_gbps"] == pytest.approx(result["algbw_gbps"])  # 2(n-1)/n = 1 for n = 2
    assert summary["peak_busbw_gbps"] == max(r["busbw_gbps"] for r in summary["results"])
