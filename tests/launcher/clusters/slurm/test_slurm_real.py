"""Real Slurm: jobs submitted with `llm-launch ... cluster=slurm action=submit` to a single-node slurmctld
and slurmd on this machine (tests/slurm_cluster.py), then status, logs, stop and resubmit through the CLI.

Two clusters: `plain` (the node is this host, partition MaxTime 30 minutes, finished jobs forgotten after
15 s (MinJobAge) so that status is asked after Slurm has forgotten them) and `odd`, whose NodeName does not resolve
(node-a1, reached at NodeAddr 127.0.0.1), which has four fake GPUs (gres on dummy devices) and
KillWait 9 s.
Steps are tiny (32-token rows, 2 rows a step) to keep each job to seconds.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from llm_launch.launcher.clusters.slurm.state import ENDED
from ports import free_port

LLM_LAUNCH = Path(sys.executable).parent / "llm-launch"
TIME_LIMIT = "cluster.slurm.time_limit=00:20:00"
TINY = ["recipe=tiny_llama_cpt", "cluster=slurm", "instance=cpu", TIME_LIMIT, "training.seq_len=32",
        "training.global_batch_size=2", "training.micro_batch_size=1", "training.schedule.name=constant",
        "training.log_every_n_steps=1", "training.eval_every_n_steps=0"]
"""Constant learning rate after warm-up, so runs of different lengths agree step for step."""


@pytest.fixture(scope="module")
def plain(slurm_cluster):
    return slurm_cluster(max_time=30, min_job_age=15)


@pytest.fixture(scope="module")
def odd(slurm_cluster):
    return slurm_cluster(node="node-a1", node_addr="127.0.0.1", gpus=4, kill_wait=9)


def cli(cluster, out: Path, *overrides: str, action: str, path: str | None = None) -> subprocess.CompletedProcess:
    """The installed llm-launch script against this cluster; `path` replaces PATH (a shell without the venv)."""
    env = cluster.env
    if path is not None:
        env["PATH"] = path
    shared = out.parent
    return subprocess.run([str(LLM_LAUNCH), f"output_dir={out}", f"cluster.slurm.shared_dir={shared}", *overrides,
                           f"action={action}"], capture_output=True, text=True, env=env, cwd=shared, timeout=300)


def submitted(cluster, out: Path, *overrides: str, path: str | None = None) -> str:
    """Submit; the job id. The rendezvous port is a free one: other sessions on this machine may hold 29500."""
    done = cli(cluster, out, *overrides, f"cluster.slurm.rendezvous_port={free_port()}", action="submit", path=path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    match = re.search(r"submitted Slurm job (\d+)", done.stdout)
    assert match, done.stdout
    return match.group(1)


def ended(cluster, out: Path, job_id: str, *overrides: str) -> str:
    """llm-launch's status line once squeue says the job has ended."""
    wait_for(lambda: slurm_state(cluster, job_id) in ENDED, f"job {job_id} to end")
    return status(cluster, out, *overrides)


def status(cluster, out: Path, *overrides: str) -> str:
    done = cli(cluster, out, *overrides, action="status")
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def wait_for(predicate, what: str, timeout: float = 240):
    """The first true value of predicate(), polled until timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def slurm_state(cluster, job_id: str) -> str:
    """squeue's word for a job, '' once Slurm has forgotten it: cheap polling between assertions."""
    done = cluster.tool("squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T")
    return done.stdout.strip() if done.returncode == 0 else ""


def state_of(line: str) -> str:
    return line.split(": ", 1)[1].split(" ")[0]


def log_of(out: Path, job_id: str) -> str:
    path = out / f"slurm-{job_id}.out"
    return path.read_text(errors="replace") if path.exists() else ""


def losses(out: Path) -> dict[int, float]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r["loss"] for r in map(json.loads, lines) if "loss" in r}


def test_cpt_jobs_pending_running_stopped_resumed_and_completed(plain, tmp_path):
    """Job A (100 steps, long enough to be stopped on a fast machine) holds the node; job B (20 steps,
    submitted from a shell without the venv on PATH) waits PENDING, runs once A is stopped, and completes;
    A, stopped by SIGTERM (which saves a checkpoint), is resubmitted and resumes bit for bit (its losses
    equal B's, step for step). Waiting polls squeue; every state asserted is the one llm-launch prints."""
    long_run, short_run = tmp_path / "long", tmp_path / "short"
    a_args = [*TINY, "job_name=cpt-long", "training.max_steps=100", "training.checkpoint.every_n_steps=0"]
    b_args = [*TINY, "job_name=cpt-short", "training.max_steps=20", "training.checkpoint.every_n_steps=10"]
    a_id = submitted(plain, long_run, *a_args)
    wait_for(lambda: slurm_state(plain, a_id) == "RUNNING", "job A to run")
    assert status(plain, long_run, *a_args) == f"{a_id}: RUNNING"
    b_id = submitted(plain, short_run, *b_args, path="/usr/bin:/bin")
    wait_for(lambda: plain.tool("squeue", "-h", "-j", b_id, "-o", "%r").stdout.strip() not in ("", "None"),
             "the scheduler to give job B its pending reason")
    pending = status(plain, short_run, *b_args)
    assert re.fullmatch(rf"{b_id}: PENDING \((Resources|Priority)\)", pending), pending

    wait_for(lambda: (long_run / "metrics.jsonl").exists() and max(losses(long_run), default=0) >= 2
             or slurm_state(plain, a_id) != "RUNNING",
             "job A's second step")
    running = cli(plain, long_run, *a_args, action="status").stdout.strip().splitlines()
    if slurm_state(plain, a_id) == "RUNNING":  # the job's own progress.json: step / max steps, pace and ETA
        assert re.fullmatch(rf"{a_id}: step \d+/100 \(\d+%\), [\d.]+ s/step, ETA \d+m\d\ds; goodput .*", running[-2]), running
    stop = cli(plain, long_run, *a_args, action="stop")
    assert stop.returncode == 0 and f"cancelled Slurm job {a_id}" in stop.stdout, stop.stderr
    wait_for(lambda: slurm_state(plain, a_id) in ENDED, "job A to end")
    log_a = log_of(long_run, a_id)
    assert "stopped by SIGTERM after step" in log_a, log_a[-3000:]
    saved = (long_run / "checkpoints" / "latest").read_text().strip()
    stopped_at = int(saved.removeprefix("step_"))
    assert 2 <= stopped_at < 100
    assert status(plain, long_run, *a_args) == (f"{a_id}: CANCELLED; {long_run / 'checkpoints' / saved} holds its "
                                                "newest checkpoint: submit the same command again to resume")
    again = cli(plain, long_run, *a_args, action="stop")
    assert again.returncode == 0 and f"Slurm job {a_id} had already ended (CANCELLED)" in again.stdout

    wait_for(lambda: slurm_state(plain, b_id) != "PENDING", "job B to start")
    assert status(plain, short_run, *b_args) == f"{b_id}: RUNNING"
    wait_for(lambda: slurm_state(plain, b_id) in ENDED, "job B to end")
    assert status(plain, short_run, *b_args) == f"{b_id}: COMPLETED", log_of(short_run, b_id)[-3000:]
    progress = cli(plain, short_run, *b_args, action="status").stdout.strip().splitlines()[-2]
    assert progress.startswith(f"{b_id}: step 20/20 (100%), ") and ", done; goodput " in progress, progress
    assert (short_run / "COMPLETE").exists()
    assert sorted(p.name for p in (short_run / "checkpoints").glob("step_*")) == ["step_00000010", "step_00000020"]
    logs = cli(plain, short_run, *b_args, action="logs")
    assert logs.returncode == 0 and "step=20 loss=" in logs.stdout

    a2_id = submitted(plain, long_run, *a_args)
    wait_for(lambda: slurm_state(plain, a2_id) in ENDED, "the resubmitted job A to end")
    assert status(plain, long_run, *a_args) == f"{a2_id}: COMPLETED", log_of(long_run, a2_id)[-3000:]
    assert f"resumed from {long_run / 'checkpoints' / saved}" in log_of(long_run, a2_id)
    reference, resumed = losses(short_run), losses(long_run)
    assert {s: resumed[s] for s in reference} == reference  # bit for bit: the same steps, stopped or not

    # Slurm forgets a finished job after MinJobAge; status still answers, from the job's output folder.
    wait_for(lambda: slurm_state(plain, b_id) == "", "Slurm to forget job B", timeout=150)
    gone = status(plain, short_run, *b_args)
    assert gone.startswith(f"{b_id}: COMPLETED (") and "no longer known to Slurm" in gone, gone


def test_time_limit_above_maxtime_and_unknown_partition_are_refused_before_sbatch(plain, tmp_path):
    out = tmp_path / "run"
    done = cli(plain, out, *[a for a in TINY if a != TIME_LIMIT], action="submit")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert ("cluster.slurm.time_limit: 5-00:00:00 exceeds the 00:30:00 MaxTime of partition debug; set "
            "cluster.slurm.time_limit=00:30:00 or less") in done.stderr, done.stderr
    assert not (out / "submissions.jsonl").exists()
    nowhere = cli(plain, out, *TINY, "cluster.slurm.partition=gpu", action="submit")
    assert nowhere.returncode == 2
    assert "error: cluster.slurm.partition: the cluster has no partition 'gpu'; use one of debug" in nowhere.stderr
    assert plain.tool("squeue", "-h", "-t", "all", "-n", "tiny-llama-cpt").stdout.strip() == ""


def test_smoke_test_meets_at_the_node_address_when_the_node_name_does_not_resolve(odd, tmp_path):
    out = tmp_path / "smoke"
    args = ["recipe=smoke_allreduce", "cluster=slurm", "instance=cpu", TIME_LIMIT,
            "cluster.slurm.checkpoint_write_gbps=0.001"]
    job_id = submitted(odd, out, *args)
    warnings = json.loads((out / "plan.json").read_text())["warnings"]
    assert any("longer than the cluster's KillWait of 9 s" in w for w in warnings), warnings  # asked at submit
    line = ended(odd, out, job_id, *args)
    log = log_of(out, job_id)
    assert state_of(line) == "COMPLETED", log[-3000:]
    assert "rendezvous on node-a1 at 127.0.0.1" in log
    assert "allreduce OK on 2 ranks (gloo)" in log
    assert json.loads((out / "COMPLETE").read_text())["ok"]


def test_the_step_finds_its_first_node_itself_when_the_batch_scripts_address_is_stale(odd, tmp_path):
    """HyperPod's auto-resume restarts the step, not the batch script, after replacing a node (issue 23): the
    address the batch script found at its start may then name a node that is gone. Here the batch script's
    HEAD_NODE/HEAD_ADDR are overwritten with a node that does not exist (192.0.2.1, TEST-NET) before srun; the
    step looks its first node up itself (node-a1 at NodeAddr 127.0.0.1) and the job completes."""
    out = tmp_path / "stale"
    args = ["recipe=smoke_allreduce", "cluster=slurm", "instance=cpu", TIME_LIMIT,
            f"cluster.slurm.rendezvous_port={free_port()}"]
    done = cli(odd, out, *args, action="render")
    assert done.returncode == 0, done.stderr
    script = out / "launch.sbatch"
    lines = script.read_text().splitlines()
    srun = next(i for i, line in enumerate(lines) if line.startswith("srun "))
    lines.insert(srun, "export HEAD_NODE=replaced-node HEAD_ADDR=192.0.2.1  # node 0 as it was before a replacement")
    script.write_text("\n".join(lines) + "\n")
    submit = odd.tool("sbatch", "--parsable", f"--output={out}/slurm-%j.out", str(script))
    assert submit.returncode == 0, submit.stderr
    job_id = submit.stdout.strip().split(";")[0]
    wait_for(lambda: slurm_state(odd, job_id) in ENDED, f"job {job_id} to end", timeout=120)
    log = log_of(out, job_id)
    assert slurm_state(odd, job_id) == "COMPLETED", log[-3000:]
    assert re.search(r"llm-launch: step \d+ on 1 node\(s\), rendezvous on node-a1 at 127\.0\.0\.1", log), log[-3000:]
    assert "allreduce OK on 2 ranks (gloo)" in log


def test_gpu_job_gets_its_gpus_in_the_step_and_refuses_to_run_without_cuda(odd, tmp_path):
    """The fake GPUs reach the step as CUDA_VISIBLE_DEVICES; torch finds no CUDA device behind them,
    so a rank stops with one line and the job fails instead of training on CPU. torchrun
    SIGTERMs the other ranks once the first one exits, so how many ranks print first is a race."""
    out = tmp_path / "gpu"
    args = ["recipe=smoke_allreduce", "cluster=slurm", "instance=ml.g5.12xlarge", TIME_LIMIT]
    job_id = submitted(odd, out, *args)
    assert state_of(ended(odd, out, job_id, *args)) == "FAILED"
    log = log_of(out, job_id)
    refusals = sorted(re.findall(r"train\.smoke: instance ml\.g5\.12xlarge has 4 NVIDIA GPU\(s\) per node but rank "
                                 r"(\d) \(local rank \d\) sees 0 CUDA device\(s\) \(CUDA_VISIBLE_DEVICES='0,1,2,3'\); "
                                 r"this torch \(\S+\) is built without CUDA; install a CUDA build of torch", log))
    assert refusals and set(refusals) <= {"0", "1", "2", "3"}, log[-3000:]
    assert not (out / "COMPLETE").exists()


def test_stop_of_a_job_slurm_no_longer_knows_says_so(plain, tmp_path):
    out = tmp_path / "gone"
    out.mkdir()
    (out / "submissions.jsonl").write_text(json.dumps({"cluster": "slurm", "job_id": "999999",
                                                       "log": str(out / "slurm-999999.out")}) + "\n")
    done = cli(plain, out, *TINY, action="stop")
    assert done.returncode == 0, done.stderr
    assert "Slurm job 999999 had already ended" in done.stdout


def test_more_nodes_than_the_partition_and_hyperpod_on_plain_slurm_are_refused_before_sbatch(plain, tmp_path):
    """Issue 23: both used to be accepted; the first pended forever (PartitionNodeLimit), the second failed
    after queuing with "srun: unrecognized option '--auto-resume=1'"."""
    out = tmp_path / "run"
    done = cli(plain, out, *TINY, "trainer.num_nodes=2", "training.global_batch_size=4",
               "cluster.slurm.hyperpod=true", "training.checkpoint.every_n_steps=5", action="submit")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert ("error: trainer.num_nodes: 2 nodes, but partition debug has 1 (TotalNodes); set trainer.num_nodes=1 "
            "or less, or pick another partition") in done.stderr, done.stderr
    assert "error: cluster.slurm.hyperpod: this cluster's srun has no --auto-resume" in done.stderr, done.stderr
    assert not (out / "submissions.jsonl").exists()
    assert plain.tool("squeue", "-h", "-t", "all", "-n", "tiny-llama-cpt").stdout.strip() == ""


def test_stop_of_a_pending_job_does_not_talk_about_a_checkpoint(plain, tmp_path):
    """A job submitted while its partition is down stays PENDING; stopping it says it never ran (issue 23)."""
    out = tmp_path / "held"
    args = [*TINY, "job_name=held-job", "training.max_steps=20"]
    assert plain.tool("scontrol", "update", "PartitionName=debug", "State=DOWN").returncode == 0
    try:
        job_id = submitted(plain, out, *args)
        wait_for(lambda: plain.tool("squeue", "-h", "-j", job_id, "-o", "%r").stdout.strip() not in ("", "None"),
                 "the scheduler to give the job its pending reason")
        assert slurm_state(plain, job_id) == "PENDING"
        stop = cli(plain, out, *args, action="stop")
    finally:
        plain.tool("scontrol", "update", "PartitionName=debug", "State=UP")
    assert stop.returncode == 0, stop.stderr
    assert f"cancelled Slurm job {job_id} (was PENDING (PartitionDown)); it had not started, so nothing was trained" \
        in stop.stdout, stop.stdout
    assert "checkpoint" not in stop.stdout


def test_gpu_job_on_a_partition_without_gpu_gres_is_refused_before_sbatch(plain, tmp_path):
    """The plain cluster's node has no GRES: sbatch --gpus-per-node would be refused, so submit says so with the fix
    (issue 23); with cluster.slurm.request_gpus=false the script asks for no GPUs and sbatch takes it."""
    out = tmp_path / "run"
    args = ["recipe=smoke_allreduce", "cluster=slurm", "instance=ml.g5.12xlarge", TIME_LIMIT,
            "cluster.slurm.hyperpod=false"]
    done = cli(plain, out, *args, action="submit")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert ("error: cluster.slurm.request_gpus: the nodes of partition debug have no GPU GRES (sinfo %G: (null)), so "
            "sbatch --gpus-per-node would be refused; set cluster.slurm.request_gpus=false") in done.stderr, done.stderr
    assert not (out / "submissions.jsonl").exists()
    job_id = submitted(plain, out, *args, "cluster.slurm.request_gpus=false")
    assert "--gpus-per-node" not in (out / "launch.sbatch").read_text()
    wait_for(lambda: slurm_state(plain, job_id) in ENDED, f"job {job_id} to end")


def test_a_stopped_job_saves_ends_before_killwait_and_its_log_ends_with_our_line(plain, tmp_path):
    """action=stop (scancel: SIGTERM to the step): the ranks finish their step, save and exit, torchrun
    (llm_launch.train.node_run) exits 143 without its SignalException traceback, well before Slurm's SIGKILL at
    KillWait (30 s here), and the job's own last line is ours (issue 23); after it only srun's lines follow."""
    out = tmp_path / "stopped"
    args = [*TINY, "job_name=cpt-stop", "training.max_steps=400", "training.checkpoint.every_n_steps=0"]
    job_id = submitted(plain, out, *args)
    wait_for(lambda: (out / "metrics.jsonl").exists() and max(losses(out), default=0) >= 2, "the job's second step")
    started = time.monotonic()
    assert cli(plain, out, *args, action="stop").returncode == 0
    wait_for(lambda: slurm_state(plain, job_id) in ENDED, "the stopped job to end", timeout=120)
    took = time.monotonic() - started
    log = log_of(out, job_id)
    # exited on its own (srun reports 143), not killed by Slurm's SIGKILL at KillWait (30 s here)
    assert "srun: error: vm: task 0: Killed" not in log, f"{took:.1f} s from scancel to the job's end\n{log[-3000:]}"
    assert took < 30, f"{took:.1f} s from scancel to the job's end (KillWait 30 s)\n{log[-3000:]}"
    assert "Traceback" not in log and "SignalException" not in log, log[-3000:]
    own = [line for line in log.splitlines() if not line.startswith(("srun:", "slurmstepd"))]
    assert own[-1].startswith("stopped by SIGTERM after step ") and "checkpoint saved" in own[-1], log[-3000:]
    assert "srun: error: vm: task 0: Exited with exit code 143" in log, log[-3000:]
    assert (out / "checkpoints" / "latest").read_text().strip().startswith("step_")
