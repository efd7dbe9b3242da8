"""Run metrics: JSON lines and TensorBoard events per logged step (rank 0), and a metrics.json summary.

MFU is tokens/s per device x FLOPs per token / the device's bf16 peak, with FLOPs per token
and peaks from llm_launch.launcher.model_math and the instance catalog: the same formula as the plan.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import torch
from llm_launch.launcher.jobfile import write_text_atomic
from llm_launch.launcher.model_math import mfu

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "metrics.json"


def _finite(record: dict) -> dict:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}


class MetricsLog:
    """Appends metric records to metrics.jsonl and every tracker of the job (TensorBoard, MLflow, W&B:
    train/tracking), and echoes a short line to stdout. Both training backends write through it.

    Every rank checks the job's trackers before training (a missing client or unreachable server is one
    JobError line on every rank, or a warning with tracking.required=false); the rank that writes metrics
    (enabled) opens their runs. Without a job (tools, tests), TensorBoard alone."""

    def __init__(self, out_dir: Path, enabled: bool, *, job=None, plan: dict | None = None):
        self.enabled = enabled
        self.path = out_dir / METRICS_FILE
        self.trackers: list = []
        self.sidecars: list = []
        """Objects with a record() -> dict whose figures join every training record (neuron-monitor)."""
        if enabled:
            out_dir.mkdir(parents=True, exist_ok=True)
        if job is not None:
            from llm_launch.train.tracking import start_trackers

            self.trackers = start_trackers(job, plan or {}, out_dir, open_runs=enabled)
            if job.neuron.monitor and job.instance.accelerator.startswith("trainium"):
                self._start_neuron_monitor(enabled)
        elif enabled:
            from llm_launch.train.tracking import tensorboard_tracker

            self.trackers = [tensorboard_tracker.start(None, {}, out_dir)]

    def _start_neuron_monitor(self, enabled: bool) -> None:
        """neuron-monitor beside training (train/neuron/monitor.py): every rank checks the tool, rank 0 runs it."""
        from llm_launch.train.errors import JobError
        from llm_launch.train.neuron.monitor import NeuronMonitor, missing_tool

        if why := missing_tool():
            raise JobError(why)
        if enabled:
            self.sidecars.append(NeuronMonitor())

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        if "loss" in record:
            for sidecar in self.sidecars:
                record = {**record, **sidecar.record()}
        clean = _finite(record)
        with self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(clean) + "\n")
        for tracker in self.trackers:
            tracker.log(clean, clean["step"])
        shown = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in clean.items() if v is not None)
        print(shown, flush=True)

    def close(self, summary_path: Path | None = None) -> None:
        """End every tracker's run, recording the summary (metrics.json) when the run finished."""
        summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path is not None else None
        for sidecar in self.sidecars:
            sidecar.close()
        for tracker in self.trackers:
            tracker.finish(summary)
        self.trackers, self.sidecars = [], []


@dataclass
class RunSummary:
    """Collects per-step figures for metrics.json (the first step of a run, which warms up, is left out)."""

    world_size: int
    tokens_per_s: list[float] = field(default_factory=list)
    mfu: list[float] = field(default_factory=list)
    memory_gib: list[float] = field(default_factory=list)

    def add_step(self, record: dict, *, first: bool) -> None:
        if record.get("memory_gib") is not None:
            self.memory_gib.append(record["memory_gib"])
        if first:
            return
        self.tokens_per_s.append(record["tokens_per_s"])
        if record.get("mfu") is not None:
            self.mfu.append(record["mfu"])

    def write(self, out_dir: Path, estimated_memory_gib: float | None = None, **figures) -> Path:
        """metrics.json; with estimated_memory_gib (GPU runs) it sets the measured peak beside the plan's estimate."""
        tokens = statistics.median(self.tokens_per_s) if self.tokens_per_s else None
        peak = max(self.memory_gib) if self.memory_gib else None
        if estimated_memory_gib is not None and peak is not None:
            figures.update(estimated_peak_memory_gib=estimated_memory_gib,
                           peak_memory_vs_estimate=peak / estimated_memory_gib)
        summary = {
            **figures,
            "world_size": self.world_size,
            "median_tokens_per_s": tokens,
            "median_tokens_per_s_per_device": tokens / self.world_size if tokens else None,
            "median_mfu": statistics.median(self.mfu) if self.mfu else None,
            "peak_memory_gib": peak,
        }
        path = out_dir / SUMMARY_FILE
        write_text_atomic(path, json.dumps(_finite(summary), indent=2) + "\n")
        return path


def step_record(*, step: int, loss: float, lr: float, grad_norm: float | None, tokens: int, elapsed_s: float,
                world_size: int, flops_per_token: float, peak_tflops: float | None,
                memory_gib: float | None) -> dict:
    """The metrics of one optimizer step, as both backends log them (MFU by llm_launch.launcher.model_math.mfu)."""
    per_device = tokens / elapsed_s / world_size
    return {
        "step": step, "loss": loss, "lr": lr, "grad_norm": grad_norm,
        "tokens_per_s": tokens / elapsed_s, "tokens_per_s_per_device": per_device,
        "mfu": mfu(per_device, flops_per_token, peak_tflops) if peak_tflops else None,
        "step_time_s": elapsed_s, "memory_gib": memory_gib,
    }


def device_memory_gib(device: torch.device, kind=None) -> float:
    """Peak memory so far: the accelerator allocator's (after a synchronize where the device row asks for one:
    llm_launch.train.devices), or this process's peak resident set on CPU."""
    from llm_launch.train.devices import peak_memory_bytes

    if kind is not None and (peak := peak_memory_bytes(kind, device)) is not None:
        return peak / 1024**3
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1024**3
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # Linux reports KiB
