"""Checks of the Slurm settings an sbatch script relies on, reported with every other problem.

With action=submit the cluster itself is asked too (scontrol, on the login node): a time limit
above the partition's MaxTime or more nodes than its TotalNodes would leave the job pending forever,
srun must have HyperPod's --auto-resume when cluster.slurm.hyperpod is set, a GPU job's partition needs a
GPU GRES for --gpus-per-node (unless cluster.slurm.request_gpus=false),
and the cluster's KillWait is what a checkpoint must beat after scancel or preemption.
sbatch options: https://slurm.schedmd.com/sbatch.html
"""

from __future__ import annotations

import math
import re
import shutil

from llm_launch.launcher.clusters.slurm.render import job_python
from llm_launch.launcher.clusters.slurm.state import key_values
from llm_launch.launcher.clusters.slurm.times import seconds_of, slurm_time
from llm_launch.launcher.clusters.tools import tool_output
from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.elastic import node_range
from llm_launch.launcher.model_math import param_counts
from llm_launch.launcher.plan import gradient_accumulation
from llm_launch.launcher.problems import Findings
from llm_launch.launcher.step_time import throughput
from llm_launch.launcher.topology import layout_of

SLURM_NAME = re.compile(r"[A-Za-z0-9_.-]+")
CHECKPOINT_BYTES_PER_PARAM = 12
"""fp32 weights and the two fp32 Adam moments a checkpoint holds per parameter (launcher/memory.py)."""
AUTO_RESUME_OPTION = "--auto-resume"
"""The srun option of SageMaker HyperPod's Slurm plugin that cluster.slurm.hyperpod=true puts on the step."""
SIGNAL_RESOLUTION_S = 60
"""Slurm checks --signal once a minute, so the signal may come up to 60 s early (sbatch --signal)."""


def checkpoint_save_seconds(job: JobConfig) -> tuple[float, float]:
    """(bytes, seconds) of writing one checkpoint to the shared file system at checkpoint_write_gbps."""
    size = param_counts(job.model).total * CHECKPOINT_BYTES_PER_PARAM
    return size, size / (job.cluster.slurm.checkpoint_write_gbps * 1e9)


def step_seconds(job: JobConfig) -> float | None:
    """Seconds of one optimizer step by the plan's step-time model (launcher/step_time.py); None where it has no
    figure (no accelerator peak, e.g. CPU jobs)."""
    layout = layout_of(job)
    grad_accum = gradient_accumulation(job.training.global_batch_size, layout.micro_batch_size, layout.topology.dp)
    speed = throughput(job, layout, grad_accum, None)
    return None if speed is None else speed.step_time_s


def _check_save_time(job: JobConfig, kill_wait_s: int, key: str, out: Findings) -> None:
    """Warn when the step in flight plus a checkpoint take longer than Slurm waits after SIGTERM (or than the
    signal's lead): training finishes the step it is in, then saves (llm_launch.train.signals)."""
    slurm = job.cluster.slurm
    if slurm.checkpoint_write_gbps <= 0:
        return
    size, save = checkpoint_save_seconds(job)
    step = step_seconds(job) or 0.0
    seconds = save + step
    estimate = f"a checkpoint of {job.model.name} (~{size / 1e9:.0f} GB) takes ~{save:.0f} s to write at " \
               f"{slurm.checkpoint_write_gbps:g} GB/s (cluster.slurm.checkpoint_write_gbps)"
    if step:
        estimate = f"the step in flight (~{step:.0f} s by the plan's step-time model) and then {estimate}: " \
                   f"~{seconds:.0f} s in all"
    if seconds > kill_wait_s:
        out.warn(key, f"{estimate}, longer than the cluster's KillWait of {kill_wait_s} s: a job cancelled or "
                 "preempted is killed before that checkpoint is complete (the previous one is kept); ask the "
                 "cluster's admin for a larger KillWait")
    if slurm.signal_before_s and seconds > slurm.signal_before_s:
        out.warn("cluster.slurm.signal_before_s", f"{estimate}, longer than the {slurm.signal_before_s} s between "
                 f"the warning signal and the time limit; set cluster.slurm.signal_before_s={math.ceil(seconds) + 60} "
                 "or more")


def check_slurm(job: JobConfig, out: Findings) -> None:
    """Names, time limit and signal usable in #SBATCH lines, a shared folder every node reads, the
    environment the job runs in, and the checkpoint's save time against the kill grace."""
    slurm = job.cluster.slurm
    for key, value in (("cluster.slurm.partition", slurm.partition), ("cluster.slurm.account", slurm.account)):
        if value is not None and not SLURM_NAME.fullmatch(value):
            out.error(key, f"'{value}' is not a Slurm name (letters, digits, '_', '.', '-')")
    try:
        limit = seconds_of(slurm.time_limit)
    except ValueError:
        out.error("cluster.slurm.time_limit", f"'{slurm.time_limit}' is not an sbatch --time such as 5-00:00:00")
        limit = None
    if slurm.signal_before_s < 0:
        out.error("cluster.slurm.signal_before_s", f"must be 0 (no warning signal) or more, got "
                  f"{slurm.signal_before_s}")
    elif limit is not None and slurm.signal_before_s + SIGNAL_RESOLUTION_S >= limit:
        out.error("cluster.slurm.signal_before_s", f"{slurm.signal_before_s} s (plus up to {SIGNAL_RESOLUTION_S} s "
                  f"early) leaves no training time within the time limit {slurm.time_limit}; set a smaller "
                  "cluster.slurm.signal_before_s or a longer cluster.slurm.time_limit")
    if slurm.kill_wait_s < 0:
        out.error("cluster.slurm.kill_wait_s", f"must be 0 or more seconds, got {slurm.kill_wait_s}")
    if slurm.checkpoint_write_gbps <= 0:
        out.error("cluster.slurm.checkpoint_write_gbps", f"must be above 0 GB/s, got {slurm.checkpoint_write_gbps}")
    if slurm.rendezvous_port is not None and not 1024 <= slurm.rendezvous_port <= 65535:
        out.error("cluster.slurm.rendezvous_port", f"must be a port from 1024 to 65535, got {slurm.rendezvous_port}")
    if slurm.python is not None and (not slurm.python.startswith("/") or "\n" in slurm.python):
        out.error("cluster.slurm.python", f"{slurm.python!r} must be an absolute path, the same on every node")
    if slurm.hyperpod and job.training.checkpoint.every_n_steps == 0:
        out.warn("cluster.slurm.hyperpod", "auto-resume restarts from the last checkpoint, and with "
                 "training.checkpoint.every_n_steps=0 there is none until the end; set every_n_steps")
    shared = slurm.shared_dir
    if not shared.startswith("/") or any(c in shared for c in ",:\n"):
        out.error("cluster.slurm.shared_dir", f"'{shared}' must be an absolute path without ',' or ':'")
    elif slurm.container_image and any(c in job.output_dir for c in ",:"):
        out.error("output_dir", "pyxis cannot mount a path with ',' or ':'; pick another output_dir")
    elif not job.output_dir.startswith(shared.rstrip("/") + "/"):
        out.warn("output_dir", f"{job.output_dir} is not under {shared}: every node must be able to read job.yaml "
                 "there; set output_dir=<shared_dir>/... unless that folder is shared too")
    python = job_python(job)
    if not slurm.container_image and not python.startswith(shared.rstrip("/") + "/"):
        out.warn("cluster.slurm.python", f"without a container the nodes run {python} (the Python llm-launch "
                 f"runs from), which is not under {shared}: every node must have that environment at that path; "
                 "set cluster.slurm.python=<a Python on the shared file system> or cluster.slurm.container_image "
                 "unless it is installed the same way on every node")
    if job.action == "submit" and shutil.which("scontrol"):
        check_against_cluster(job, limit, out)
    else:
        _check_save_time(job, slurm.kill_wait_s, "cluster.slurm.kill_wait_s", out)


def check_against_cluster(job: JobConfig, limit: int | None, out: Findings) -> None:
    """The partition's MaxTime and the cluster's KillWait, as scontrol reports them on this login node."""
    slurm = job.cluster.slurm
    partitions = [key_values(line) for line in tool_output(["scontrol", "-o", "show", "partition"]).splitlines()]
    chosen = [p for p in partitions if p.get("PartitionName") == slurm.partition] if slurm.partition else \
        [p for p in partitions if p.get("Default") == "YES"]
    if slurm.partition and partitions and not chosen:
        names = ", ".join(p.get("PartitionName", "?") for p in partitions)
        out.error("cluster.slurm.partition", f"the cluster has no partition '{slurm.partition}'; use one of {names}")
    for partition in chosen[:1]:
        try:
            max_time = seconds_of(partition.get("MaxTime", "UNLIMITED"))
        except ValueError:
            max_time = None
        if limit is not None and max_time is not None and limit > max_time:
            out.error("cluster.slurm.time_limit", f"{slurm.time_limit} exceeds the {slurm_time(max_time)} MaxTime of "
                      f"partition {partition['PartitionName']}; set cluster.slurm.time_limit={slurm_time(max_time)} "
                      "or less")
        total = partition.get("TotalNodes", "")
        low, high = node_range(job)
        key = "trainer.min_nodes" if low < high else "trainer.num_nodes"
        if total.isdigit() and low > int(total):  # sbatch would queue it forever (PartitionNodeLimit)
            out.error(key, f"{low} nodes, but partition {partition['PartitionName']} "
                      f"has {total} (TotalNodes); set {key}={total} or less, or pick another partition")
        elif total.isdigit() and high > int(total):  # a node range: Slurm allocates what the partition has
            out.warn("trainer.num_nodes", f"partition {partition['PartitionName']} has {total} nodes (TotalNodes): "
                     f"the elastic job runs on at most {total} of its {high}")
        if job.instance.accelerator == "nvidia" and slurm.request_gpus:
            _check_gpu_gres(partition.get("PartitionName", ""), out)
    srun_help = tool_output(["srun", "--help"]) if slurm.hyperpod else ""
    if srun_help and AUTO_RESUME_OPTION not in srun_help:
        # HyperPod's SPANK plugin adds srun --auto-resume, and SPANK options are listed by srun --help
        # (https://slurm.schedmd.com/spank.html#SECTION_SPANK-OPTIONS,
        # https://docs.aws.amazon.com/sagemaker/latest/dg/sagemaker-hyperpod-resiliency-slurm-auto-resume.html).
        out.error("cluster.slurm.hyperpod", "this cluster's srun has no --auto-resume (the SageMaker HyperPod plugin): "
                  "the job would fail when its step starts; set cluster.slurm.hyperpod=false on a plain Slurm")
    match = re.search(r"^KillWait\s*=\s*(\d+)", tool_output(["scontrol", "show", "config"]), re.MULTILINE)
    _check_save_time(job, int(match.group(1)) if match else slurm.kill_wait_s, "cluster.slurm.kill_wait_s", out)


def _check_gpu_gres(partition: str, out: Findings) -> None:
    """sbatch --gpus-per-node needs a GPU GRES on the partition's nodes (gres.conf); without one sbatch refuses the job
    (https://slurm.schedmd.com/gres.html). sinfo %G lists each node group's GRES, "(null)" for none
    (https://slurm.schedmd.com/sinfo.html#OPT_%G)."""
    gres = tool_output(["sinfo", "-h", "-p", partition, "-o", "%G"]) if partition else ""
    if gres and not any(item.split(":")[0] == "gpu" for line in gres.splitlines() for item in line.split(",")):
        out.error("cluster.slurm.request_gpus", f"the nodes of partition {partition} have no GPU GRES (sinfo %G: "
                  f"{' '.join(sorted(set(gres.split())))}), so sbatch --gpus-per-node would be refused; set "
                  "cluster.slurm.request_gpus=false (the job takes whole nodes and sees all their GPUs) or have the "
                  "cluster's admin configure gres.conf")
