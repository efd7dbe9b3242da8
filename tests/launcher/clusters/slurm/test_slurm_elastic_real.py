"""Real Slurm (single node, tests/slurm_cluster.py): an elastic job's node range and a hung job's exit code.

* trainer.min_nodes=1, trainer.num_nodes=2 renders `#SBATCH --nodes=1-2`, --no-kill and --requeue: sbatch accepts
  them, Slurm allocates the one node there is, and the ranks lay the job out for one node (the global batch kept).
* A rank made to hang (train/faults.py): the watchdog ends every rank with 75; the step runs torchrun as
  `python -m llm_launch.train.node_run`, which ends with the first failed rank's own code, so the step, and the
  batch script, end with 75: Slurm's ExitCode 75:0.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from llm_launch.launcher.clusters.slurm.state import ENDED  # noqa: E402
from llm_launch.launcher.progress import HANG_EXIT_CODE  # noqa: E402
from test_slurm_real import TINY, log_of, losses, slurm_state, submitted, wait_for  # noqa: E402

TWO_RANKS = ["trainer.nproc_per_node=2", "parallelism.tp=2", "training.schedule.warmup_steps=1"]


@pytest.fixture(scope="module")
def plain(slurm_cluster):
    """The same cluster as test_slurm_real.py's `plain` (one per distinct arguments in a session)."""
    return slurm_cluster(max_time=30, min_job_age=15)


def _exit_code(cluster, job_id: str) -> str:
    shown = cluster.tool("scontrol", "show", "job", job_id).stdout
    match = re.search(r"\bExitCode=(\d+:\d+)", shown)
    assert match, shown
    return match.group(1)


def test_an_elastic_range_runs_on_the_nodes_slurm_gives(plain, tmp_path):
    out = tmp_path / "elastic"
    job_id = submitted(plain, out, *TINY, *TWO_RANKS, "job_name=elastic-range", "trainer.num_nodes=2",
                       "trainer.min_nodes=1", "training.max_steps=3", "training.checkpoint.every_n_steps=0")
    script = (out / "launch.sbatch").read_text()
    assert "#SBATCH --nodes=1-2" in script and "#SBATCH --no-kill" in script and "#SBATCH --requeue" in script
    wait_for(lambda: slurm_state(plain, job_id) in ENDED, f"job {job_id} to end")
    log = log_of(out, job_id)
    assert slurm_state(plain, job_id) == "COMPLETED", log[-4000:]
    assert "elastic: nodes 1 to 2, running on 1 node(s): 2 ranks, dp 1, grad accum 2" in log, log[-4000:]
    assert "global batch 2" in log
    assert sorted(losses(out)) == [1, 2, 3]
    assert _exit_code(plain, job_id) == "0:0"


def test_a_hung_step_ends_the_slurm_job_with_exit_code_75(plain, tmp_path, monkeypatch):
    out = tmp_path / "hung"
    monkeypatch.setenv("LLM_LAUNCH_TEST_FAULTS", "hang=1@3")  # sbatch passes the submitting shell's environment on
    job_id = submitted(plain, out, *TINY, *TWO_RANKS, "job_name=hung", "training.max_steps=6",
                       "training.checkpoint.every_n_steps=0", "training.watchdog.hang_timeout_s=10")
    wait_for(lambda: slurm_state(plain, job_id) in ENDED, f"job {job_id} to end", timeout=300)
    log = log_of(out, job_id)
    assert "test fault: rank 1 hangs at step 3" in log, log[-4000:]
    assert "hang: step 3 did not finish within 10 s; ranks [1] did not arrive" in log, log[-4000:]
    assert slurm_state(plain, job_id) == "FAILED"
    assert _exit_code(plain, job_id) == f"{HANG_EXIT_CODE}:0"
