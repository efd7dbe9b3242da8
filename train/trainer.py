"""The one training loop, over either backend (llm_launch.train.backend): data order, stop requests, evaluation and
checkpoint cadence, metrics, export and the COMPLETE marker.

Reads nothing but the resolved JobConfig, so what runs is what the launcher planned. The backend
(GPU engine or NxD on Trainium, chosen from the instance) only builds, steps, evaluates, saves,
resumes and exports; every behaviour below is therefore the same on both.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import replace
from pathlib import Path

from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.jobfile import COMPLETE_MARKER, write_text_atomic
from llm_launch.launcher.memory import GIB
from llm_launch.launcher.plan import make_plan
from llm_launch.train.backend import Backend, open_backend
from llm_launch.train.cadence import Cadence
from llm_launch.train.data.loader import StepBatches, eval_batches
from llm_launch.train.data.open import open_dataset
from llm_launch.train.errors import JobError
from llm_launch.train.faults import hang_here
from llm_launch.train.metrics import MetricsLog, RunSummary, step_record
from llm_launch.train.run_progress import RunProgress
from llm_launch.train.signals import StopRequest
from llm_launch.train.watchdog import Watchdog

EVAL_FILE = "eval.json"


class Trainer:
    """One run of a job: build, resume, step to max_steps (or a stop request), evaluate, checkpoint, export.

    precompile (Trainium, under neuron_parallel_compile): trace job.neuron.precompile_steps steps with the
    training topology; no resume, metrics, checkpoint, export or marker.
    """

    def __init__(self, job: JobConfig, *, job_path: str = "job.yaml", precompile: bool = False,
                 backend: Backend | None = None):
        self.job, self.plan = job, make_plan(job)
        self.job_path, self.precompile = job_path, precompile
        self.stop = StopRequest()
        self.backend = backend or open_backend(job, self.plan)
        self.backend.start()
        cfg, b = job.training, self.backend
        self.out_dir = Path(job.output_dir)
        records = not precompile and job.task != "eval"
        self.metrics = MetricsLog(self.out_dir, b.is_main and records, job=job if records else None,
                                  plan=self.plan.to_dict())
        broadcast = b.shares_objects_by_broadcast
        train_data = open_dataset(cfg.data.train_path, job, b.is_main, object_broadcast=broadcast) \
            if job.task != "eval" else None
        valid_data = open_dataset(cfg.data.valid_path, job, b.is_main, object_broadcast=broadcast)
        self.batches = StepBatches(train_data, seed=cfg.seed, global_batch=cfg.global_batch_size,
                                   micro_batch=cfg.micro_batch_size, dp_rank=b.dp_rank, dp_size=b.dp_size) \
            if train_data is not None else None
        masking = cfg.data.document_masking and (train_data or valid_data) is not None
        b.build(document_eos=(train_data or valid_data).index["eos_id"] if masking else None)
        self.held_out = eval_batches(valid_data, global_batch=cfg.global_batch_size,
                                     micro_batch=cfg.micro_batch_size, batches=cfg.eval_batches,
                                     dp_rank=b.dp_rank, dp_size=b.dp_size) if valid_data is not None else []
        self.valid_rows = min(len(valid_data), cfg.global_batch_size * cfg.eval_batches) if valid_data else 0
        watched = records and b.supports_watchdog
        self.watchdog = Watchdog(cfg.watchdog if watched else replace(cfg.watchdog, enabled=False), rank=b.rank,
                                 world_size=b.world_size, out_dir=self.out_dir)
        self.watchdog.start()
        self.current_step = 0
        b.arrival_hook = self._arrive
        self.progress = RunProgress(self.out_dir, cfg.checkpoint.dir, cfg.max_steps, enabled=b.is_main and records)
        self.cadence = Cadence(cfg.checkpoint.fixed_every, auto=cfg.checkpoint.auto_interval,
                               max_lost_minutes=cfg.checkpoint.max_lost_minutes)

    def _arrive(self) -> None:
        """This rank enters the end-of-step collective (the backend calls it): report progress to the watchdog."""
        hang_here(self.backend.rank, self.current_step)
        self.watchdog.arrived(self.current_step)

    def _evaluate_and_log(self, step: int) -> float:
        started = time.perf_counter()
        val_loss = self.backend.evaluate(self.held_out)
        self.progress.evaluation(time.perf_counter() - started)
        figures = {f"val_{name}": value for name, value in self.backend.evaluation_figures().items()}
        if not figures:  # a token cross-entropy; preference tasks report rewards and accuracy instead
            figures = {"val_ppl": math.exp(min(val_loss, 50))}
        self.metrics.write({"step": step, "val_loss": val_loss, **figures})
        return val_loss

    def _save(self, step: int, loss: float) -> float:
        """Save (or, in async mode, start saving) step; records the seconds the loop stood still. With
        every_n_steps=auto the first save of a run is the probe that picks the interval (train/cadence.py)."""
        started = time.perf_counter()
        probe = self.cadence.probing and step < self.job.training.max_steps
        self.cadence.save_begins()
        self.backend.save(step, loss=loss)
        if probe:  # the probe's time counts until the checkpoint is complete
            self.backend.wait_for_saves()
        stall = time.perf_counter() - started
        self.progress.checkpoint(stall)
        self.metrics.write({"step": step, "checkpoint_stall_s": stall,
                            "checkpoint_mode": str(self.job.training.checkpoint.mode)})
        picked = self.cadence.save_ends(step) if probe else None
        if picked:
            self.progress.progress.checkpoint_every_n_steps = picked["checkpoint_every_n_steps"]
            self.metrics.write({"step": step, **picked})
            if self.backend.is_main:
                print(f"checkpoint cadence: every {picked['checkpoint_every_n_steps']} steps (step "
                      f"{picked['measured_step_s']:.3g} s, save {picked['measured_save_s']:.3g} s, "
                      f"training.checkpoint.max_lost_minutes={self.job.training.checkpoint.max_lost_minutes:g})",
                      flush=True)
        self.progress.write()
        return stall

    def _wait_for_saves(self) -> None:
        started = time.perf_counter()
        self.backend.wait_for_saves()
        self.progress.checkpoint(time.perf_counter() - started)

    def _finish(self, result: dict | None, summary_path: Path | None = None) -> None:
        """Close the metrics (and the trackers' runs, with metrics.json when the run finished), write the marker
        last (rank 0) and leave the process group."""
        self.watchdog.stop()
        self.metrics.close(summary_path)
        self.backend.barrier()
        if result is not None and self.backend.is_main:
            write_text_atomic(self.out_dir / COMPLETE_MARKER, json.dumps(result) + "\n")
        self.backend.close()

    def run(self) -> dict | None:
        """Train to max_steps; returns the run's summary (None after a precompile run)."""
        job, cfg, b = self.job, self.job.training, self.backend
        start_step = 0 if self.precompile else b.resume()
        if not self.precompile:
            self.progress.start(start_step)
        last_step = min(cfg.max_steps, start_step + job.neuron.precompile_steps) if self.precompile \
            else cfg.max_steps
        tokens_per_step = cfg.global_batch_size * cfg.seq_len
        summary = RunSummary(world_size=b.world_size)
        started = time.perf_counter()
        loss, val_loss = math.nan, None
        for step in range(start_step, last_step):
            self.current_step = step + 1
            self.watchdog.step_started(step + 1)
            self.cadence.step_begins()
            step_start = time.perf_counter()
            result = b.step(self.batches.micro_batches(step), stop_vote=self.stop.signalled)
            elapsed = time.perf_counter() - step_start
            self.cadence.step_ends()
            self.watchdog.step_finished(step + 1, elapsed)
            loss, done = result.loss, step + 1
            if self.precompile:
                continue
            self.progress.step(done, elapsed)
            record = step_record(step=done, loss=loss, lr=result.lr, grad_norm=result.grad_norm,
                                 tokens=tokens_per_step, elapsed_s=elapsed, world_size=b.world_size,
                                 flops_per_token=self.plan.flops_per_token,
                                 peak_tflops=self.plan.estimates.peak_tflops_per_rank, memory_gib=b.memory_gib())
            record.update(result.figures)
            stragglers = self.watchdog.straggler_ranks(result.rank_times)
            if stragglers:
                record["straggler_ranks"] = stragglers
                self.progress.progress.stragglers = sorted({*self.progress.progress.stragglers, *stragglers})
                if b.is_main:
                    median = statistics.median_low(result.rank_times)
                    print(f"straggler: rank(s) {stragglers} reached the end of step {done} more than "
                          f"{cfg.watchdog.straggler_factor:g}x later than the median rank ({median:.3g} s) for "
                          f"{cfg.watchdog.straggler_steps} steps in a row: "
                          f"{', '.join(f'rank {r} {result.rank_times[r]:.3g} s' for r in stragglers)}", flush=True)
            summary.add_step(record, first=step == start_step)
            if done % cfg.log_every_n_steps == 0 or done == cfg.max_steps or done == start_step + 1 or stragglers:
                self.metrics.write(record)
                self.progress.write()
            if self.held_out and cfg.eval_every_n_steps and done % cfg.eval_every_n_steps == 0 \
                    and done < cfg.max_steps:
                val_loss = self._evaluate_and_log(done)
            if result.stop:
                if b.is_main:
                    print(f"{self.stop.reason}: stopping after step {done}; saving a checkpoint", flush=True)
                self._save(done, loss)
                self._wait_for_saves()
                self.progress.write()
                if b.is_main:
                    print(f"stopped by {self.stop.reason} after step {done}; checkpoint saved in {cfg.checkpoint.dir}; "
                          "run the job again to resume", flush=True)
                self._finish(None)
                return {"step": done, "stopped": True}
            if self.cadence.due(done, cfg.max_steps):
                self._save(done, loss)
        if not self.precompile:
            self._wait_for_saves()

        elapsed_s = round(time.perf_counter() - started, 2)
        if self.precompile:
            if b.is_main:
                print(f"precompile: traced {last_step - start_step} steps in {elapsed_s} s; no checkpoint or marker "
                      "written", flush=True)
            self._finish(None)
            return None
        if self.held_out:
            val_loss = self._evaluate_and_log(cfg.max_steps)
        exported = b.export(self.out_dir, self.job_path)
        result = {"step": cfg.max_steps, "loss": loss, "val_loss": val_loss, "backend": b.name, **exported,
                  "metrics": str(self.metrics.path), "checkpoints": cfg.checkpoint.dir,
                  "elapsed_s": round(time.perf_counter() - started, 2), "world_size": b.world_size}
        estimate = self.plan.memory.total / GIB if b.measures_accelerator_memory() else None
        self.progress.write()
        goodput = self.progress.figures()
        self.metrics.write({"step": cfg.max_steps, **goodput})
        summary_path = summary.write(self.out_dir, estimated_memory_gib=estimate, final_loss=loss, val_loss=val_loss,
                                     steps=cfg.max_steps, elapsed_s=result["elapsed_s"], **goodput,
                                     checkpoint_every_n_steps=self.cadence.every or None) if b.is_main else None
        self._finish(result, summary_path)
        return result

    def evaluate_only(self) -> dict:
        """task=eval: the validation loss of model.pretrained_path or the newest checkpoint (eval.json)."""
        source, step = self.backend.load_for_eval()
        loss = self.backend.evaluate(self.held_out)
        result = {"model": source, "checkpoint_step": step, "val_loss": loss, "val_ppl": math.exp(min(loss, 50)),
                  "rows": self.valid_rows, "backend": self.backend.name}
        if self.backend.is_main:
            write_text_atomic(self.out_dir / EVAL_FILE, json.dumps(result, indent=2) + "\n")
            print(f"val_loss={loss:.4f} val_ppl={result['val_ppl']:.2f} ({source})", flush=True)
        self._finish(result)
        return result


def train(job: JobConfig, *, job_path: str = "job.yaml", precompile: bool = False) -> dict | None:
    """Run the job to max_steps (resuming if a checkpoint exists) and return its summary."""
    return Trainer(job, job_path=job_path, precompile=precompile).run()


def evaluate_job(job: JobConfig, *, job_path: str = "job.yaml", precompile: bool = False) -> dict:
    """Evaluate the job's model on its validation data and return (and write) the result."""
    if precompile:
        raise JobError("--precompile traces training steps; an eval job has none to trace: drop --precompile")
    if job.training.data.valid_path is None:
        raise JobError("training.data.valid_path is not set; point it at held-out data to evaluate on")
    return Trainer(job, job_path=job_path).evaluate_only()
