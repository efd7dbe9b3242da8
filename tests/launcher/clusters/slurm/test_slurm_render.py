"""Slurm: the sbatch script parses, carries the topology, and really runs (fake srun/scontrol, 2 gloo ranks)."""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from launcher.clusters import cluster_of
from launcher.clusters.slurm.render import sbatch_script
from launcher.jobfile import write_job

FAKE_SCONTROL = "#!/bin/bash\necho localhost\necho other-node\n"
FAKE_SRUN = """#!/bin/bash
python3 -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "$@" >> "{log}"
while [[ "$1" == --* ]]; do shift; done
exec "$@"
"""


def srun_lines(script: str) -> list[list[str]]:
    return [shlex.split(line) for line in script.splitlines() if line.startswith("srun ")]


@pytest.mark.parametrize("overrides, nodes, nproc, port, steps", [
    (("recipe=llama3_8b_cpt_trn1",), 4, 32, 41000, 1),
    (("recipe=llama2_70b_cpt_trn1", "neuron.precompile=true"), 32, 32, 41000, 2),
    (("recipe=llama3_8b_cpt_trn1", "instance=ml.trn2.48xlarge", "cluster.slurm.partition=train",
      "cluster.slurm.account=ml-team", "cluster.slurm.container_image=/fsx/images/llm-launch.sqsh"), 4, 64, 41000, 1),
    (("recipe=smoke_allreduce", "instance=ml.p5.48xlarge", "trainer.num_nodes=8"), 8, 8, 29500, 1),
])
def test_script_parses_and_carries_the_topology(job_for, tmp_path, overrides, nodes, nproc, port, steps, render_job):
    job = job_for(*overrides, "cluster=slurm", "cluster.slurm.shared_dir=/", "action=render")
    remote, files = render_job(job, tmp_path)
    script = files[-1].read_text()
    assert subprocess.run(["bash", "-n", str(files[-1])]).returncode == 0
    assert f"#SBATCH --nodes={nodes}" in script and "#SBATCH --ntasks-per-node=1" in script
    lines = srun_lines(script)
    assert len(lines) == steps
    train = lines[-1]
    assert f"--nodes={nodes}" in train and "torchrun" in train
    args = train[train.index("torchrun"):]
    assert args[1:4] == [f"--nnodes={nodes}", f"--nproc_per_node={nproc}", "--rdzv_backend=c10d"]
    assert args[4] == f"--rdzv_endpoint=${{HEAD_NODE}}:{port}"  # expanded by bash, on the batch node
    assert args[-4:] == ["-m", "train.cpt" if "cpt" in overrides[0] else "train.smoke", "--job",
                         str(tmp_path / "job.yaml")]
    if steps == 2:
        assert lines[0][lines[0].index("neuron_parallel_compile") + 1:] == [*args, "--precompile"]
    if "cluster.slurm.partition=train" in overrides:
        assert "#SBATCH --partition=train" in script and "#SBATCH --account=ml-team" in script
        assert "--container-image=/fsx/images/llm-launch.sqsh" in train
        assert "NEURON_LOGICAL_NC_CONFIG=2" in script


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_script_runs_the_smoke_job_with_fake_slurm(job_for, tmp_path):
    out = tmp_path / "fsx" / "smoke"
    job = job_for("recipe=smoke_allreduce", "cluster=slurm", f"cluster.slurm.shared_dir={tmp_path / 'fsx'}")
    job = cluster_of(job).container_job(job)
    job.output_dir = str(out)  # the CPU instance is refused for real clusters; the script itself is what is tested
    job_yaml = write_job(job, out / "job.yaml")
    script = sbatch_script(job, str(job_yaml)).replace(":29500", f":{free_port()}")
    (out / "launch.sbatch").write_text(script)
    bin_dir, log = tmp_path / "bin", tmp_path / "srun.log"
    bin_dir.mkdir()
    for name, body in (("scontrol", FAKE_SCONTROL), ("srun", FAKE_SRUN.format(log=log))):
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin", SLURM_JOB_ID="77",
               SLURM_JOB_NODELIST="localhost,other-node", SLURM_JOB_NUM_NODES="1")
    done = subprocess.run(["bash", str(out / "launch.sbatch")], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "rendezvous on localhost" in done.stdout
    (argv,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert "--rdzv_id=77" in argv and any(a.startswith("--rdzv_endpoint=localhost:") for a in argv)
    summary = json.loads((out / "COMPLETE").read_text())
    assert summary["ok"] and summary["world_size"] == 2 and summary["backend"] == "gloo"
