"""Asynchronous checkpoints (training.checkpoint.mode=async): the loop stalls only while the state is copied to
host memory; the shards are written, recorded and made current in the background.

A save:
1. waits for the previous save to finish (its files written, recorded and `latest` moved), so at most one is
   in flight and at most one staged copy is held;
2. prepares step_N.tmp as a synchronous save does (llm_launch.train.gpu.checkpoint.begin_save);
3. hands the model and optimizer state to DCP's async_save
   (https://pytorch.org/docs/stable/distributed.checkpoint.html#torch.distributed.checkpoint.state_dict_saver.async_save),
   whose stager copies every tensor to host memory before it returns: pinned memory with non-blocking copies on
   CUDA (torch.distributed.checkpoint.staging.DefaultStager; the buffers are kept and reused by the next save),
   plain host memory on the CPU; DCP then writes the shards on a thread of its own;
4. returns to training. A checkpoint thread waits for DCP's write, then runs the same completion as a synchronous
   save (llm_launch.train.gpu.checkpoint.complete_save): every file recorded in trainer_state.json, the folder
   renamed, `latest` moved, old checkpoints pruned. Until then the checkpoint does not count, so a kill at any
   moment of the background write leaves `latest` on the previous complete checkpoint.

The background threads talk over a gloo process group of their own (DCP needs a CPU group, and collectives of two
threads on one group would interleave), made when the checkpointer is (every rank, before training), as torchtitan does
(https://github.com/pytorch/torchtitan/blob/main/torchtitan/components/checkpoint.py). A failed background write
surfaces at the next save or at the end of the run (wait()), as the same error a synchronous save raises.
"""

from __future__ import annotations

import copy
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from llm_launch.train.faults import checkpoint_write_delay
from llm_launch.train.gpu.checkpoint import (
    STATE_DICT_OPTIONS,
    SaveTarget,
    begin_save,
    complete_save,
    dcp_destination,
    out_of_space_as_job_error,
    write_rng_state,
)
from llm_launch.train.gpu.checkpoint_store import S3Prefix
from torch.distributed.checkpoint.staging import DefaultStager, StagingOptions
from torch.distributed.checkpoint.state_dict import get_state_dict


def staging_options(device: torch.device) -> StagingOptions:
    """Pinned host buffers and non-blocking copies where the state lives on a CUDA device; plain copies on the CPU.
    Staging itself runs on the calling thread (the loop must not change the weights while they are copied)."""
    cuda = device.type == "cuda"
    return StagingOptions(use_pinned_memory=cuda, use_shared_memory=False, use_async_staging=False,
                          use_non_blocking_copy=cuda)


class AsyncCheckpointer:
    """One rank's background saves: at most one in flight."""

    def __init__(self, device: torch.device):
        self.device = device
        self.group = dist.new_group(backend="gloo")  # collective: every rank
        self.stager: DefaultStager | None = DefaultStager(staging_options(device))
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llm-launch-checkpoint")
        self.pending: Future | None = None
        self.pending_step: int | None = None

    def wait(self) -> float:
        """Wait until the save in flight (if any) is complete; returns the seconds waited. Re-raises its error."""
        if self.pending is None:
            return 0.0
        started = time.perf_counter()
        pending, self.pending, self.pending_step = self.pending, None, None
        pending.result()
        return time.perf_counter() - started

    def save(self, root: Path | S3Prefix, step: int, model, optimizer, scheduler, *, rank: int, keep_last: int,
             extra: dict | None = None) -> float:
        """Start a save of step (collective); returns the seconds spent waiting for the previous one."""
        waited = self.wait()
        target = begin_save(root, step)
        with out_of_space_as_job_error(root, step, target.tmp):
            model_state, optim_state = get_state_dict(model, optimizer, options=STATE_DICT_OPTIONS)
            upload = dcp.async_save({"model": model_state, "optim": optim_state}, **dcp_destination(target),
                                    process_group=self.group, async_stager=self.stager)
            write_rng_state(target, rank, torch.get_rng_state())
        state = {"step": step, "scheduler": copy.deepcopy(scheduler.state_dict()), **(extra or {})}
        self.pending = self.executor.submit(self._complete, upload, target, rank, keep_last, state)
        self.pending_step = step
        return waited

    def _complete(self, upload: Future, target: SaveTarget, rank: int, keep_last: int, state: dict):
        with out_of_space_as_job_error(target.root, target.step, target.tmp):
            upload.result()
            checkpoint_write_delay(target.step)
            return complete_save(target, rank=rank, keep_last=keep_last, state=state, group=self.group)

    def close(self) -> None:
        """Finish the save in flight and release the staging buffers."""
        try:
            self.wait()
        finally:
            self.executor.shutdown(wait=True)
            if self.stager is not None:
                self.stager.close()
                self.stager = None
