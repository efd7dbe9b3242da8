"""Slurm: the sbatch script parses and carries the topology, GPUs, signal, environment, container and
HyperPod flags. These are the cases a single-node real Slurm cannot show (many nodes, pyxis, HyperPod);
jobs on a real Slurm run in test_slurm_real.py.
"""

from __future__ import annotations

import shlex
import subprocess
import sys

import pytest
from cluster_locations import cluster_inputs
from llm_launch.launcher.clusters.slurm.render import STEP_HEAD_LINES


def step_of(script: str) -> tuple[list[str], list[str]]:
    """(srun argv up to `bash -c`, the node script's lines) of the one srun step."""
    (srun,) = [line for line in script.splitlines() if line.startswith("srun ")]
    words = shlex.split(script[script.index("srun "):])
    cut = words.index("bash")
    assert words[cut + 1] == "-c" and len(words) == cut + 3
    return words[:cut], words[cut + 2].strip().splitlines()


P5_SMOKE = ("recipe=smoke_allreduce", "instance=ml.p5.48xlarge", "trainer.num_nodes=8")
TRN2_CONTAINER = ("recipe=llama3_8b_cpt_trn1", "instance=ml.trn2.48xlarge", "cluster.slurm.partition=train",
                  "cluster.slurm.account=ml-team", "cluster.slurm.container_image=/fsx/images/llm-launch.sqsh")


@pytest.mark.parametrize("overrides, nodes, nproc, port, steps", [
    (("recipe=llama3_8b_cpt_trn1",), 4, 32, 41000, 1),
    (("recipe=llama2_70b_cpt_trn1", "neuron.precompile=true"), 32, 32, 41000, 2),
    (TRN2_CONTAINER, 4, 64, 41000, 1),
    (P5_SMOKE, 8, 8, 29500, 1),
    ((*P5_SMOKE, "cluster.slurm.hyperpod=true", "cluster.slurm.rendezvous_port=29400",
      "cluster.slurm.python=/fsx/venvs/llm/bin/python", "cluster.slurm.signal_before_s=0"), 8, 8, 29400, 1),
])
def test_script_parses_and_carries_the_topology(job_for, tmp_path, overrides, nodes, nproc, port, steps, render_job):
    job = job_for(*overrides, "cluster=slurm", "cluster.slurm.shared_dir=/", *cluster_inputs("slurm", "cpt"),
                  "action=render")
    remote, files = render_job(job, tmp_path)
    script = files[-1].read_text()
    assert subprocess.run(["bash", "-n", str(files[-1])]).returncode == 0
    assert f"#SBATCH --nodes={nodes}" in script and "#SBATCH --ntasks-per-node=1" in script
    srun, node_lines = step_of(script)
    assert srun[:4] == ["srun", f"--nodes={nodes}", "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
    assert ("--auto-resume=1" in srun) == ("cluster.slurm.hyperpod=true" in overrides)
    assert len([line for line in node_lines if "train." in line]) == steps
    # the step looks its first node up each time it starts (HyperPod's auto-resume restarts the step, not the script)
    assert node_lines[1:1 + len(STEP_HEAD_LINES)] == STEP_HEAD_LINES
    assert 'scontrol show hostnames "${SLURM_STEP_NODELIST:-${SLURM_JOB_NODELIST}}"' in "\n".join(node_lines)
    train = shlex.split(node_lines[-1])
    container = "cluster.slurm.container_image=/fsx/images/llm-launch.sqsh" in overrides
    python = "/fsx/venvs/llm/bin/python" if "cluster.slurm.python=/fsx/venvs/llm/bin/python" in overrides \
        else sys.executable
    launcher = ["python" if container else python, "-m", "llm_launch.train.node_run"]
    assert train[0] == "exec" and train[1:1 + len(launcher)] == launcher
    args = train[1 + len(launcher):]
    assert args[:3] == [f"--nnodes={nodes}", f"--nproc_per_node={nproc}", "--rdzv_backend=c10d"]
    # expanded by the step's shell: the first node's NodeAddr, and only that node hosts the store
    assert args[3:6] == [f"--rdzv_endpoint=${{HEAD_ADDR}}:{port}", "--rdzv_id=${SLURM_JOB_ID}",
                         "--rdzv_conf=is_host=$((SLURM_NODEID == 0))"]
    assert args[-4:] == ["-m", "llm_launch.train.cpt" if "cpt" in overrides[0] else "llm_launch.train.smoke", "--job",
                         str(tmp_path / "job.yaml")]
    if steps == 2:
        precompile = shlex.split(node_lines[-2])
        assert precompile == ["neuron_parallel_compile", *train[1:], "--precompile"]
    assert ("#SBATCH --gpus-per-node=8" in script) == ("instance=ml.p5.48xlarge" in overrides)
    assert ("#SBATCH --signal=TERM@300" in script) == ("cluster.slurm.signal_before_s=0" not in overrides)
    grace = 30 if "cluster.slurm.signal_before_s=0" in overrides else 300  # KillWait, or the signal's lead
    assert f"export TORCH_ELASTIC_SHUTDOWN_TIMEOUT={grace}" in script.splitlines()
    path_line = f"export PATH={shlex.quote(python.rsplit('/', 1)[0])}:\"${{PATH}}\""
    assert (path_line in script.splitlines()) == (not container)
    if container:
        assert "#SBATCH --partition=train" in script and "#SBATCH --account=ml-team" in script
        assert "--container-image=/fsx/images/llm-launch.sqsh" in srun
        assert "NEURON_LOGICAL_NC_CONFIG=2" in script


def test_slurm_asks_for_a_node_range_keeps_the_allocation_and_requeues(job_for, tmp_path, render_job):
    job = job_for("recipe=smoke_allreduce", "instance=ml.p5.48xlarge", "trainer.num_nodes=8", "trainer.min_nodes=6",
                  "cluster=slurm", "cluster.slurm.shared_dir=/", "action=render")
    _, files = render_job(job, tmp_path)
    script = files[-1].read_text()
    assert subprocess.run(["bash", "-n", str(files[-1])]).returncode == 0
    lines = script.splitlines()
    assert {"#SBATCH --nodes=6-8", "#SBATCH --no-kill", "#SBATCH --requeue"} <= set(lines)
    srun, _ = step_of(script)
    assert srun[:5] == ["srun", "--nodes=${SLURM_JOB_NUM_NODES}", "--ntasks-per-node=1", "--no-kill",
                        "--kill-on-bad-exit=0"]
    torchrun = script[script.index("llm_launch.train.node_run"):]
    assert "--nnodes=6:8 --nproc_per_node=8 --max-restarts=3 --rdzv_backend=c10d" in torchrun
