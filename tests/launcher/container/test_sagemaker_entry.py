"""The SageMaker container entry: node rank and master from the hosts, whatever order they arrive in."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from llm_launch.launcher.clusters.sagemaker.paths import container_job
from llm_launch.launcher.container.sagemaker_entry import HostsError, node_place, node_steps, read_hosts
from llm_launch.launcher.jobfile import write_job

TEXT_SORTED = sorted(f"algo-{i}" for i in range(1, 13))  # algo-1, algo-10, algo-11, algo-12, algo-2, ...


@pytest.mark.parametrize("current, rank", [("algo-1", 0), ("algo-2", 1), ("algo-9", 8), ("algo-10", 9),
                                           ("algo-12", 11)])
def test_rank_follows_the_host_number_not_the_text_order(current, rank):
    assert TEXT_SORTED[1] == "algo-10"
    assert node_place(TEXT_SORTED, current) == (rank, "algo-1")
    assert node_place(list(reversed(TEXT_SORTED)), current) == (rank, "algo-1")


def test_hosts_from_env_or_resource_config(tmp_path):
    config = tmp_path / "resourceconfig.json"
    config.write_text(json.dumps({"current_host": "algo-3", "hosts": ["algo-1", "algo-2", "algo-3"]}))
    assert read_hosts({}, config) == (["algo-1", "algo-2", "algo-3"], "algo-3")
    env = {"SM_HOSTS": json.dumps(["algo-1", "algo-2"]), "SM_CURRENT_HOST": "algo-2"}
    assert read_hosts(env, config) == (["algo-1", "algo-2"], "algo-2")
    with pytest.raises(HostsError):
        read_hosts({}, tmp_path / "missing.json")
    with pytest.raises(HostsError):
        node_place(["algo-1"], "algo-7")


def test_steps_of_a_trainium_node_with_precompile(job_for, tmp_path):
    job = container_job(job_for("recipe=llama3_8b_cpt_trn1", "cluster=sagemaker", "neuron.precompile=true"))
    job_yaml = str(write_job(job, tmp_path / "job.yaml"))
    env = {"SM_HOSTS": json.dumps(["algo-1", "algo-2", "algo-3", "algo-4"]), "SM_CURRENT_HOST": "algo-3"}
    precompile, train = node_steps(job_yaml, env)
    assert train == [sys.executable, "-m", "llm_launch.train.node_run",
                     "--nnodes=4", "--nproc_per_node=32", "--node_rank=2", "--master_addr=algo-1",
                     "--master_port=41000", "-m", "llm_launch.train.cpt", "--job", job_yaml]
    assert precompile == ["neuron_parallel_compile", *train, "--precompile"]
    with pytest.raises(HostsError, match="trainer.num_nodes=4"):
        node_steps(job_yaml, {"SM_HOSTS": '["algo-1"]', "SM_CURRENT_HOST": "algo-1"})


def test_dry_run_from_the_command_line(job_for, tmp_path):
    job = container_job(job_for("recipe=smoke_allreduce", "cluster=sagemaker", "instance=ml.p5.48xlarge",
                                "trainer.num_nodes=12"))
    job_yaml = str(write_job(job, tmp_path / "job.yaml"))
    env = {"SM_HOSTS": json.dumps(TEXT_SORTED), "SM_CURRENT_HOST": "algo-11", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "llm_launch.launcher.container.sagemaker_entry", "--job", job_yaml,
                           "--dry-run"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    (train,) = json.loads(done.stdout)
    assert "--node_rank=10" in train and "--master_port=29500" in train and "--nproc_per_node=8" in train
