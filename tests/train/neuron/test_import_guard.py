"""Without neuronx_distributed / torch_xla the Neuron path imports fine and stops with one line."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest
from composed_job import recipe_job
from llm_launch.launcher import PROJECT_ROOT
from llm_launch.launcher.jobfile import write_job


def _has(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


needs_no_neuron = pytest.mark.skipif(_has("neuronx_distributed") or _has("torch_xla"),
                                     reason="the Neuron stack is installed here")


def test_backend_modules_import_without_nxd():
    for name in ("llm_launch.train.neuron", "llm_launch.train.neuron.backend", "llm_launch.train.neuron.nxd_config",
                 "llm_launch.train.neuron.runtime", "llm_launch.train.trainer", "llm_launch.train.backend",
                 "llm_launch.train.eval"):
        importlib.import_module(name)


@needs_no_neuron
@pytest.mark.parametrize("extra", [[], ["--precompile"]], ids=["train", "precompile"])
def test_trainium_job_stops_with_one_line(tmp_path, extra):
    job = recipe_job("llama3_8b_cpt_trn1", output_dir=tmp_path)
    path = write_job(job, tmp_path / "job.yaml")
    proc = subprocess.run([sys.executable, "-m", "llm_launch.train.cpt", "--job", str(path), *extra], capture_output=True,
                          text=True, cwd=PROJECT_ROOT)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "neuronx_distributed" in lines[0] or "torch_xla" in lines[0]
    assert "Neuron training DLC" in lines[0]
    assert not (tmp_path / "COMPLETE").exists()


def test_precompile_is_rejected_on_cpu_jobs(tmp_path):
    job = recipe_job("tiny_llama_cpt", output_dir=tmp_path)
    path = write_job(job, tmp_path / "job.yaml")
    proc = subprocess.run([sys.executable, "-m", "llm_launch.train.cpt", "--job", str(path), "--precompile"],
                          capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert proc.returncode != 0
    assert proc.stderr.strip().count("\n") == 0 and "--precompile is for Trainium jobs" in proc.stderr
