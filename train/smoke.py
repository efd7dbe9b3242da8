"""Allreduce smoke test: python -m llm_launch.train.smoke --job job.yaml (under torchrun, on every rank).

The recommended first job on a new cluster. Every rank all-reduces (sum) a tensor of ones for a
few message sizes and checks that every element equals the world size, then times the allreduce
and reports bandwidth as nccl-tests does: algbw = bytes / time, busbw = algbw x 2(n-1)/n (the
bandwidth each link carries in a ring, comparable across world sizes). Backend by instance: the torch
engine's device row (NCCL on NVIDIA GPUs, neuron on Trainium native, gloo on CPU: llm_launch.launcher.devices), or
XLA on Trainium under NxD (torch-xla, imported only there). Rank 0 writes the
COMPLETE marker (a JSON summary) last; the local runner judges success by it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from llm_launch.launcher.devices import uses_nxd
from llm_launch.launcher.jobfile import COMPLETE_MARKER, read_job, write_text_atomic
from llm_launch.train.accelerators import require_accelerators
from llm_launch.train.devices import runtime_device_kind, synchronize
from llm_launch.train.distributed import start_process_group
from llm_launch.train.errors import JobError
from llm_launch.train.lifeline import tie_rank_to_launcher

KIB, MIB = 1024, 1024 * 1024
CPU_SIZES = (4 * KIB, 256 * KIB, 4 * MIB, 16 * MIB)
ACCELERATOR_SIZES = (1 * MIB, 16 * MIB, 256 * MIB, 1024 * MIB)
CPU_ITERATIONS, ACCELERATOR_ITERATIONS = 5, 20
WARMUP = 2


class SmokeFailed(Exception):
    """The allreduce gave a wrong result or the backend is not what the instance needs."""


@dataclass(frozen=True)
class Measurement:
    """One message size."""

    bytes: int
    time_ms: float
    algbw_gbps: float
    """Bytes per second of one allreduce, in GB/s (10^9)."""
    busbw_gbps: float
    """algbw x 2(n-1)/n, in GB/s."""


def bus_bandwidth(algbw: float, world_size: int) -> float:
    """nccl-tests' bus bandwidth of an allreduce."""
    return algbw * 2 * (world_size - 1) / world_size


class Backend:
    """Process group, device and a way to wait for queued collectives to finish."""

    def __init__(self, job):
        self.xm = None
        accelerator = job.instance.accelerator
        if accelerator == "nvidia" and not torch.cuda.is_available():
            raise SmokeFailed("the instance has NVIDIA GPUs but torch sees no CUDA device")
        if uses_nxd(job):
            try:
                import torch_xla.core.xla_model as xm
                import torch_xla.distributed.xla_backend  # noqa: F401  (registers the "xla" backend)
            except ImportError:
                raise SmokeFailed("Trainium needs torch-neuronx/torch-xla, which this image lacks") from None
            self.xm = xm
            self.name = "xla"
            dist.init_process_group("xla", init_method="xla://")
            self.device = xm.xla_device()
        else:  # the torch engine's device row: nccl, neuron (TorchNeuron) or gloo
            kind = runtime_device_kind(job)
            self.name, self.device = kind.process_group, start_process_group(kind)
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()

    def sync(self) -> None:
        """Block until every queued collective has finished on this rank."""
        if self.xm is not None:
            self.xm.mark_step()
            self.xm.wait_device_ops()
        else:
            synchronize(self.device)


def check_allreduce(backend: Backend, size: int) -> float:
    """All-reduce ones of `size` bytes; return the largest deviation from world size (0 when correct)."""
    data = torch.ones(size // 4, dtype=torch.float32, device=backend.device)
    dist.all_reduce(data)
    backend.sync()
    return float((data.cpu() - backend.world_size).abs().max())


def time_allreduce(backend: Backend, size: int, iterations: int) -> Measurement:
    """Mean time of one allreduce of `size` bytes, and its bandwidths."""
    data = torch.zeros(size // 4, dtype=torch.float32, device=backend.device)
    for _ in range(WARMUP):
        dist.all_reduce(data)
    backend.sync()
    dist.barrier()
    started = time.perf_counter()
    for _ in range(iterations):
        dist.all_reduce(data)
    backend.sync()
    seconds = (time.perf_counter() - started) / iterations
    algbw = size / seconds / 1e9
    return Measurement(size, seconds * 1e3, algbw, bus_bandwidth(algbw, backend.world_size))


def all_ranks_passed(backend: Backend, passed: bool) -> bool:
    """True only if every rank's check passed."""
    flag = torch.tensor([0.0 if passed else 1.0], device=backend.device)
    dist.all_reduce(flag)
    backend.sync()
    return float(flag.cpu()[0]) == 0.0


def table(results: list[Measurement]) -> str:
    """The bandwidth table rank 0 prints."""
    rows = [f"{'size':>10} {'time_ms':>10} {'algbw_GB/s':>11} {'busbw_GB/s':>11}"]
    rows += [f"{r.bytes:>10} {r.time_ms:>10.3f} {r.algbw_gbps:>11.3f} {r.busbw_gbps:>11.3f}" for r in results]
    return "\n".join(rows)


def run(job_path: str, precompile: bool) -> dict | None:
    job = read_job(job_path)
    try:
        require_accelerators(job)
    except JobError as exc:
        raise SmokeFailed(str(exc)) from None
    backend = Backend(job)
    sizes = CPU_SIZES if backend.name == "gloo" else ACCELERATOR_SIZES
    iterations = CPU_ITERATIONS if backend.name == "gloo" else ACCELERATOR_ITERATIONS
    deviations = {size: check_allreduce(backend, size) for size in sizes}
    passed = all_ranks_passed(backend, all(d == 0.0 for d in deviations.values()))
    if not passed:
        bad = {s: d for s, d in deviations.items() if d}
        print(f"smoke: rank {backend.rank}: allreduce sum differs from world size {backend.world_size}: "
              f"{bad or 'on another rank'}", file=sys.stderr, flush=True)
        dist.destroy_process_group()
        raise SmokeFailed("allreduce gave a wrong sum")
    if precompile:  # neuron_parallel_compile traces the graphs; nothing is measured or written
        dist.destroy_process_group()
        return None
    results = [time_allreduce(backend, size, iterations) for size in sizes]
    summary = {"task": "smoke", "ok": True, "backend": backend.name, "world_size": backend.world_size,
               "nodes": job.trainer.num_nodes, "instance": job.instance.name, "iterations": iterations,
               "results": [asdict(r) for r in results],
               "peak_busbw_gbps": max(r.busbw_gbps for r in results)}
    dist.barrier()
    if backend.rank == 0:
        print(table(results), flush=True)
        print(f"smoke: allreduce OK on {backend.world_size} ranks ({backend.name}): sum == world size at "
              f"{len(sizes)} sizes; peak busbw {summary['peak_busbw_gbps']:.3f} GB/s", flush=True)
        write_text_atomic(Path(job.output_dir) / COMPLETE_MARKER, json.dumps(summary) + "\n")
    dist.barrier()
    dist.destroy_process_group()
    return summary


def main(argv: list[str] | None = None) -> None:
    tie_rank_to_launcher()  # no rank outlives llm-launch (train/lifeline.py)
    parser = argparse.ArgumentParser(prog="python -m llm_launch.train.smoke", description="Allreduce smoke test.")
    parser.add_argument("--job", required=True, help="resolved job.yaml written by llm-launch")
    parser.add_argument("--precompile", action="store_true", help="trace the collectives only (Neuron compile)")
    args = parser.parse_args(argv)
    try:
        run(args.job, args.precompile)
    except SmokeFailed as exc:
        sys.exit(f"train.smoke: {exc}")


if __name__ == "__main__":
    main()
