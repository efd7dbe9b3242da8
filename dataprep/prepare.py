"""Data preparation as a job: python -m llm_launch.dataprep.prepare --job job.yaml (started by torchrun like training).

The work is DataTrove pipelines (dataprep/pipeline.py). Each node is one host: its local rank 0 runs the
node's share of every stage's tasks on a LocalPipelineExecutor of data_prep.workers processes (0: every
core), the other local ranks only join the barriers between stages (over gloo; no accelerator is used).
Host 0 writes the index of each split, manifest.json and, as its very last act, the COMPLETE marker.
With several nodes, data_prep.output.dir and the intermediates (output.work_dir) must be on storage all of
them reach (a shared file system: EKS mount_path, Slurm shared_dir, FSx; or s3:// for the intermediates).

A rerun of the same job skips every finished task (DataTrove's completion markers) and finished shards.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

from llm_launch.dataprep.executors import Hosts, StageFailed
from llm_launch.dataprep.manifest import MANIFEST_FILE
from llm_launch.dataprep.pipeline import prepare_data
from llm_launch.dataprep.process import available_cores
from llm_launch.dataprep.run import OutputInUse
from llm_launch.launcher.data_prep import mix_warnings, resolve_data_prep
from llm_launch.launcher.data_sources import missing_packages
from llm_launch.launcher.jobfile import COMPLETE_MARKER, read_job, write_text_atomic
from llm_launch.launcher.problems import USAGE_EXIT_CODE
from llm_launch.launcher.tasks import entrypoint
from llm_launch.train.lifeline import tie_rank_to_launcher

BARRIER_TIMEOUT = timedelta(hours=48)
"""Hosts wait this long at a barrier for the others to finish a stage (a stage of a large corpus takes hours)."""


def _hosts() -> tuple[Hosts, int]:
    """This node as a host (torchrun's GROUP_RANK among WORLD_SIZE / LOCAL_WORLD_SIZE nodes) and the world size."""
    world, local_world = int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    if world == 1:
        return Hosts(), 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo", rank=int(os.environ["RANK"]), world_size=world, timeout=BARRIER_TIMEOUT)
    hosts = Hosts(index=int(os.environ.get("GROUP_RANK", int(os.environ["RANK"]) // local_world)),
                  count=max(1, world // local_world), works=int(os.environ.get("LOCAL_RANK", 0)) == 0,
                  barrier=dist.barrier)
    return hosts, world


def mix_report(sources: list[dict]) -> list[str]:
    """What each source contributed to the mix (documents and share), then a warning for each one whose weight
    left more than half of its kept text out (llm_launch.launcher.data_prep.mix_warnings, as the plan says)."""
    lines = [f"source {s['name']}: {s['documents_selected']:,} of {s['documents_available']:,} kept documents, "
             f"{s['share_selected']:.1%} of the mix" for s in sources]
    if len(sources) > 1:
        use = [s["chars_selected"] / s["chars_available"] if s["chars_available"] else 1.0 for s in sources]
        lines += [f"warning: {w}" for w in mix_warnings([s["name"] for s in sources], [s["weight"] for s in sources],
                                                         use, "kept text")]
    return lines


def main(argv: list[str] | None = None) -> None:
    tie_rank_to_launcher()  # no rank outlives llm-launch (train/lifeline.py)
    parser = argparse.ArgumentParser(prog="python -m llm_launch.dataprep.prepare", description="Run a data preparation job.")
    parser.add_argument("--job", required=True, help="resolved job.yaml written by llm-launch")
    args = parser.parse_args(argv)
    job = read_job(args.job)
    if job.task != "prepare":
        sys.exit(f"llm_launch.dataprep.prepare: {args.job} is a '{job.task}' job; start {entrypoint(job.task)}")
    cfg = resolve_data_prep(job)
    missing = missing_packages(cfg)
    if missing:  # checked here, where the job runs (llm-launch checks them at plan time only for local jobs)
        print(f"llm_launch.dataprep.prepare: {'; '.join(str(p) for p in missing)}", file=sys.stderr, flush=True)
        sys.exit(USAGE_EXIT_CODE)
    workers = cfg.workers or available_cores()
    cores = available_cores()
    os.environ.setdefault("RAYON_NUM_THREADS", str(max(1, cores // workers)))  # each pack task's tokenizer threads
    hosts, world = _hosts()
    started = time.perf_counter()
    try:
        manifest = prepare_data(cfg, hosts, progress=hosts.works,
                                shared_output=job.cluster.kind != "sagemaker")  # SageMaker hosts share only S3
    except (OutputInUse, StageFailed) as exc:
        sys.exit(f"llm_launch.dataprep.prepare: {exc}")
    if hosts.index == 0 and hosts.works:
        out = Path(cfg.output.dir)
        splits = manifest["splits"]
        summary = {"task": "prepare", "output": str(out), "manifest": str(out / MANIFEST_FILE),
                   **{f"{name}_path": str(out / name) for name in splits},
                   **{f"{name}_rows": s["rows"] for name, s in splits.items()},
                   "tokens": sum(s["tokens_packed"] for s in splits.values()),
                   "bad_input": manifest["bad_input"]["total"], "elapsed_s": round(time.perf_counter() - started, 2),
                   "world_size": world, "hosts": hosts.count}
        for line in mix_report(manifest["sources"]):
            print(f"llm_launch.dataprep.prepare: {line}", flush=True)
        print(f"llm_launch.dataprep.prepare: {json.dumps(summary)}", flush=True)
        write_text_atomic(Path(job.output_dir) / COMPLETE_MARKER, json.dumps(summary) + "\n")
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
