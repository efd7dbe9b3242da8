"""A job planned for GPUs refuses to start on a rank that sees none, with one line (no silent CPU training).

This machine has no GPU, so a GPU instance's job is exactly the case: the scheduler said
CUDA_VISIBLE_DEVICES=0 but torch finds no CUDA device.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from llm_launch.launcher import PROJECT_ROOT


@pytest.mark.parametrize("recipe, module", [("tiny_llama_cpt", "llm_launch.train.cpt"),
                                            ("smoke_allreduce", "llm_launch.train.smoke")])
def test_gpu_job_without_a_gpu_stops_with_one_line(tmp_path, launch, recipe, module):
    rendered = launch(tmp_path, f"recipe={recipe}", "instance=local_gpu", "action=render")
    assert rendered.returncode == 0, rendered.stderr
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "0", "RANK": "0", "LOCAL_RANK": "0"}
    proc = subprocess.run([sys.executable, "-m", module, "--job", str(tmp_path / "job.yaml")], capture_output=True,
                          text=True, cwd=PROJECT_ROOT, env=env, timeout=300)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    import torch

    # GPUs were requested (CUDA_VISIBLE_DEVICES is set), so the cause is the torch build or the driver (issue 23)
    cause = (f"this torch ({torch.__version__}) is built without CUDA; install a CUDA build of torch where the job "
             "runs (https://pytorch.org/get-started/locally/) or run it in the GPU image") if torch.version.cuda is None \
        else "the scheduler gave this rank GPUs that CUDA cannot open; check the node's NVIDIA driver (nvidia-smi)"
    assert len(lines) == 1 and lines[0].split(": ", 1)[0] in (module, module.removeprefix("llm_launch.")), proc.stderr
    assert lines[0].split(": ", 1)[1] == ("instance local_gpu has 1 NVIDIA GPU(s) per node but rank 0 (local rank 0) "
                                          f"sees 0 CUDA device(s) (CUDA_VISIBLE_DEVICES='0'); {cause}"), proc.stderr
    assert not (tmp_path / "COMPLETE").exists() and not (tmp_path / "checkpoints").exists()
