"""The CLI on remote clusters: render writes the files, submit refuses the shipped examples before
anything is rendered, and submit/status/logs/stop drive kubectl and sbatch (fakes on PATH here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cluster_locations import cluster_inputs
from llm_launch.launcher import PROJECT_ROOT

TRN1_8B = "recipe=llama3_8b_cpt_trn1"
FAKE_TOOL = """#!/bin/bash
echo "$(basename "$0") $*" >> "{log}"
{body}
"""


def llm_launch(out_dir: Path, *args: str, path: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if path is not None:
        env["PATH"] = path
    return subprocess.run([sys.executable, "-m", "llm_launch.launcher.cli", f"output_dir={out_dir}", *args],
                          capture_output=True, text=True, cwd=PROJECT_ROOT, env=env, timeout=120)


def fake_tools(bin_dir: Path, log: Path, tools: dict[str, str]) -> str:
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, body in tools.items():
        script = bin_dir / name
        script.write_text(FAKE_TOOL.format(log=log, body=body))
        script.chmod(0o755)
    return f"{bin_dir}:/usr/bin:/bin"


def test_render_writes_the_files(tmp_path):
    out = tmp_path / "out"
    done = llm_launch(out, TRN1_8B, "action=render")
    assert done.returncode == 0, done.stderr
    for name in ("plan.json", "job.yaml", "sagemaker_request.json"):
        assert (out / name).is_file(), name
    assert "sagemaker_request.json" in done.stdout


def test_submit_with_the_shipped_examples_names_every_key_and_renders_nothing(tmp_path):
    out = tmp_path / "out"
    done = llm_launch(out, TRN1_8B, "action=submit")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    for key in ("cluster.image", "cluster.sagemaker.role_arn", "cluster.sagemaker.s3_output_uri",
                "cluster.sagemaker.s3_checkpoint_uri", "cluster.sagemaker.s3_code_uri",
                "cluster.sagemaker.channels.train", "cluster.sagemaker.channels.tokenizer"):
        assert f"error: {key}: " in done.stderr, key
    assert not (out / "job.yaml").exists() and not (out / "sagemaker_request.json").exists()


def test_eks_submit_status_logs_stop_through_kubectl(tmp_path):
    out, log = tmp_path / "out", tmp_path / "calls.log"
    path = fake_tools(tmp_path / "bin", log, {"kubectl": 'echo "pytorchjob.kubeflow.org/x configured"'})
    image = "cluster.image=123456789012.dkr.ecr.us-east-1.amazonaws.com/llm-launch:trainium1-0.1.0"
    common = [TRN1_8B, "cluster=eks", image, *cluster_inputs("eks", "cpt")]
    done = llm_launch(out, *common, "action=submit", path=path)
    assert done.returncode == 0, done.stderr
    record = json.loads((out / "submissions.jsonl").read_text().splitlines()[-1])
    assert record["cluster"] == "eks" and record["name"] == "llama3-8b-cpt-trn1"
    for action in ("status", "logs", "stop"):
        assert llm_launch(out, *common, f"action={action}", path=path).returncode == 0
    calls = log.read_text().splitlines()
    assert calls == [
        f"kubectl apply -f {out / 'pytorchjob.yaml'}",
        "kubectl get pytorchjob llama3-8b-cpt-trn1 -n default -o wide",
        "kubectl logs -n default -l llm-launch/job=llama3-8b-cpt-trn1 --prefix --tail=200 "
        "--max-log-requests=64",
        f"kubectl delete -f {out / 'pytorchjob.yaml'} --ignore-not-found",
    ]


def test_missing_kubectl_or_unreachable_cluster_is_one_line_exit_2(tmp_path):
    image = "cluster.image=123456789012.dkr.ecr.us-east-1.amazonaws.com/llm-launch:trainium1-0.1.0"
    (tmp_path / "empty").mkdir()
    eks = ["cluster=eks", *cluster_inputs("eks", "cpt")]
    missing = llm_launch(tmp_path / "a", TRN1_8B, *eks, image, "action=submit", path=str(tmp_path / "empty"))
    assert missing.returncode == 2 and "kubectl is not on PATH" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    path = fake_tools(tmp_path / "bin", tmp_path / "log", {
        "kubectl": 'echo "The connection to the server localhost:8080 was refused" >&2; exit 1'})
    down = llm_launch(tmp_path / "b", TRN1_8B, *eks, image, "action=submit", path=path)
    assert down.returncode == 2 and "Traceback" not in down.stderr
    assert down.stderr.strip().splitlines()[-1] == ("llm-launch: kubectl apply failed: The connection to the "
                                                    "server localhost:8080 was refused")


@pytest.mark.system
def test_slurm_status_after_squeue_and_scontrol_forgot_the_job_comes_from_sacct(tmp_path):
    """Fake tools: accounting storage (slurmdbd) is what the real single-node Slurm of the tests lacks."""
    out, log = tmp_path / "fsx" / "out", tmp_path / "calls.log"
    gone = 'echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1'
    path = fake_tools(tmp_path / "bin", log, {"sbatch": "echo 4242", "squeue": gone, "scontrol": gone,
                                              "sacct": 'echo "CANCELLED by 0|None"', "scancel": ""})
    common = [TRN1_8B, "cluster=slurm", f"cluster.slurm.shared_dir={tmp_path / 'fsx'}", *cluster_inputs("slurm", "cpt")]
    done = llm_launch(out, *common, "action=submit", path=path)
    assert done.returncode == 0, done.stderr
    (out / "slurm-4242.out").write_text("step=1 loss=3.0\n")
    status = llm_launch(out, *common, "action=status", path=path)
    assert status.stdout.strip().endswith("4242: CANCELLED")
    assert "step=1 loss=3.0" in llm_launch(out, *common, "action=logs", path=path).stdout
    stop = llm_launch(out, *common, "action=stop", path=path)
    assert stop.returncode == 0 and "Slurm job 4242 had already ended (CANCELLED); nothing to stop" in stop.stdout
    calls = log.read_text().splitlines()
    assert calls[:2] == ["scontrol -o show partition", "scontrol show config"]
    assert f"sbatch --parsable --output={out / 'slurm-%j.out'} {out / 'launch.sbatch'}" in calls
    assert calls.count("squeue -h -t all -j 4242 -o %T|%r") == 2 and "sacct -n -X -P -j 4242 -o State,Reason" in calls
    assert not any(c.startswith("scancel") for c in calls)


def test_slurm_status_and_stop_with_the_controller_down_say_so_and_cancel_nothing(tmp_path):
    """Fake tools: a controller that does not answer (squeue retries for ~20 s first on a real one)."""
    out, log = tmp_path / "fsx" / "out", tmp_path / "calls.log"
    down = 'echo "slurm_load_jobs error: Unable to contact slurm controller (connect failure)" >&2; exit 1'
    path = fake_tools(tmp_path / "bin", log, {"squeue": down, "scontrol": down, "sacct": "echo COMPLETED",
                                              "scancel": ""})
    out.mkdir(parents=True)
    (out / "submissions.jsonl").write_text('{"cluster": "slurm", "job_id": "7", "log": "x"}\n')
    common = [TRN1_8B, "cluster=slurm", f"cluster.slurm.shared_dir={tmp_path / 'fsx'}", *cluster_inputs("slurm", "cpt")]
    for action in ("status", "stop"):
        done = llm_launch(out, *common, f"action={action}", path=path)
        assert done.returncode == 2 and done.stderr.strip() == ("llm-launch: squeue failed: slurm_load_jobs error: "
                                                               "Unable to contact slurm controller (connect failure)")
    assert log.read_text().splitlines() == ["squeue -h -t all -j 7 -o %T|%r"] * 2


@pytest.mark.parametrize("field, value", [("cluster.slurm.partition", "'x\"; rm -rf / #'"),
                                          ("cluster.slurm.account", "'$(id)'")])
def test_slurm_names_outside_the_slurm_alphabet_are_refused(tmp_path, field, value):
    done = llm_launch(tmp_path / "out", TRN1_8B, "cluster=slurm", *cluster_inputs("slurm", "cpt"), "action=render",
                      f"{field}={value}")
    assert done.returncode == 2 and f"error: {field}: " in done.stderr
    assert not (tmp_path / "out" / "launch.sbatch").exists()
