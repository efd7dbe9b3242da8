"""Security and determinism of rendered files: hostile strings stay data, secrets never appear,
and the same inputs render byte-identical files."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cluster_locations import cluster_inputs
from llm_launch.launcher import PROJECT_ROOT
from llm_launch.launcher.clusters import cluster_of
from llm_launch.launcher.clusters.eks.render import manifests
from llm_launch.launcher.clusters.slurm.render import sbatch_script
from llm_launch.launcher.jobfile import write_job

HOSTILE = ['x"; rm -rf / #', "$(touch {canary})", "`touch {canary}`", "a\nb; touch {canary}", "'; touch {canary}; '",
           "${{HOME}} $PATH", "--job=/etc/passwd"]
CAPTURE_TOOL = """#!/bin/bash
python3 -c 'import json, os, sys
print(json.dumps({{"tool": os.path.basename(sys.argv[1]), "argv": sys.argv[2:],
                   "cc": os.environ.get("NEURON_CC_FLAGS"), "cache": os.environ.get("NEURON_COMPILE_CACHE_URL")}}))' \
  "$0" "$@" >> "{log}"
if [ "$(basename "$0")" = srun ]; then
  while [[ "$1" == --* ]]; do shift; done
  exec "$@"
fi
"""
"""Records its name, arguments and the Neuron variables; as srun, then runs the step like srun would."""


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_strings_reach_slurm_commands_intact(job_for, tmp_path, hostile):
    canary = tmp_path / "PWNED"
    value = hostile.format(canary=canary)
    job = job_for("recipe=llama3_8b_cpt_trn1", "cluster=slurm", "neuron.precompile=true")
    job = cluster_of(job).container_job(job)
    job.neuron.cc_flags = ["--verbose", value]
    job.neuron.compile_cache_url = value
    job.cluster.slurm.container_image = value
    job.job_name = value
    out = tmp_path / "out dir" / value.replace("/", "_").replace("\n", "_")
    job.output_dir = str(out)
    job_yaml = write_job(job, out / "job.yaml")
    script_path = out / "launch.sbatch"
    script_path.write_text(sbatch_script(job, str(job_yaml)))
    assert subprocess.run(["bash", "-n", str(script_path)]).returncode == 0
    (name_line,) = [ln for ln in script_path.read_text().splitlines() if ln.startswith("#SBATCH --job-name=")]
    assert re.fullmatch(r"#SBATCH --job-name=[A-Za-z0-9_.-]+", name_line)
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.jsonl"
    bin_dir.mkdir()
    for tool in ("srun", "neuron_parallel_compile", "python"):
        (bin_dir / tool).write_text(CAPTURE_TOOL.format(log=log))
    (bin_dir / "scontrol").write_text("#!/bin/bash\necho node-1\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:/usr/bin:/bin", SLURM_JOB_ID="5", SLURM_JOB_NODELIST="node-1",
               SLURM_JOB_NUM_NODES="4", SLURM_NODEID="0")
    done = subprocess.run(["bash", str(script_path)], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert not canary.exists()
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [c["tool"] for c in calls] == ["srun", "neuron_parallel_compile", "python"]  # precompile, then training
    assert f"--container-image={value}" in calls[0]["argv"]
    for call in calls:
        assert call["cc"].endswith(f"--verbose {value}") and call["cache"] == value
    for call in calls[1:]:
        assert call["argv"][call["argv"].index("--job") + 1] == str(job_yaml)


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_strings_stay_data_in_eks_manifests(job_for, hostile):
    value = hostile.format(canary="/tmp/x")
    job = job_for("recipe=llama3_8b_cpt_trn1", "cluster=eks")
    job = cluster_of(job).container_job(job)
    job.neuron.cc_flags = [value]
    job.cluster.image = value
    text = yaml.safe_dump_all(manifests(job))
    ptj = [d for d in yaml.safe_load_all(text) if d["kind"] == "PyTorchJob"][0]
    container = ptj["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]
    assert container["image"] == value
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["NEURON_CC_FLAGS"].endswith(value)
    assert value not in container["command"][2]  # user strings never enter the container's shell script


SECRET_ENV = {"HF_TOKEN": "hf_FAKEtoken1234567890secret", "AWS_SECRET_ACCESS_KEY": "FAKEawsSECRETkey0987654321",
              "AWS_SESSION_TOKEN": "FAKEsessionTOKENvalue42"}


@pytest.mark.parametrize("cluster", ["sagemaker", "eks", "slurm"])
def test_no_secret_in_rendered_files_or_output(tmp_path, cluster):
    out = tmp_path / "out"
    env = dict(os.environ, **SECRET_ENV)
    done = subprocess.run([sys.executable, "-m", "llm_launch.launcher.cli", "recipe=llama3_8b_cpt_trn1", f"cluster={cluster}",
                           "action=render", f"output_dir={out}", "cluster.eks.hf_token_secret=hf-token",
                           *cluster_inputs(cluster, "cpt")],
                          capture_output=True, text=True, cwd=PROJECT_ROOT, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    texts = [done.stdout, done.stderr] + [p.read_text() for p in out.iterdir() if p.is_file()]
    assert len(texts) >= 5
    for secret in SECRET_ENV.values():
        assert not any(secret in text for text in texts)


@pytest.mark.parametrize("overrides", [
    ("recipe=llama3_8b_cpt_trn1", "cluster=sagemaker"),
    ("recipe=llama3_8b_cpt_trn1", "cluster=eks", "cluster.eks.elastic=true", "cluster.eks.rdzv_backend=etcd",
     *cluster_inputs("eks", "cpt")),
    ("recipe=llama2_70b_cpt_trn1", "cluster=slurm", "neuron.precompile=true", *cluster_inputs("slurm", "cpt")),
    ("recipe=smoke_allreduce",),
])
def test_rendering_is_deterministic(job_for, tmp_path, overrides, render_job):
    def render_bytes() -> dict[str, bytes]:
        _, files = render_job(job_for(*overrides, "action=render"), tmp_path)
        return {Path(f).name: Path(f).read_bytes() for f in files}

    first = render_bytes()
    assert first == render_bytes()
