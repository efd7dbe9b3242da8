"""What the training loop (llm_launch.train.trainer) needs from an accelerator stack, and the table of stacks.

A backend builds the model, optimizer and scheduler for this rank, runs one optimizer step over
this rank's micro-batches, evaluates held-out batches, saves and resumes checkpoints, and exports
the result. The loop owns everything else: data order, stop requests, evaluation and checkpoint
cadence, metrics and the COMPLETE marker, so both backends behave the same way.

Loss contract (train/loss.py): every target token of the global batch weighs the same. A step
returns the mean loss per target token over the global batch, and gradients equal the gradient
of that mean, whatever the layout, micro-batching or loss masking.

Backends, by engine (BACKENDS, llm_launch.launcher.devices.engine_of): "torch" (train/gpu: FSDP2, TP, PP on NVIDIA
GPUs, on Trainium 2/3 through TorchNeuron's "neuron" device, and on the CPU with gloo) and "nxd" (train/neuron:
neuronx-distributed on Trainium 1, the legacy PyTorch/XLA stack).
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.devices import NXD_ENGINE, TORCH_ENGINE, engine_of
from llm_launch.launcher.plan import Plan
from llm_launch.train.data.loader import Rows
from llm_launch.train.loss import target_count


@dataclass(frozen=True)
class StepResult:
    """One optimizer step as the loop logs it."""

    loss: float
    """Mean loss per target token over the global batch."""
    grad_norm: float | None
    """Global gradient norm before clipping (None where the backend does not compute it)."""
    lr: float
    """The learning rate this step used (read before the scheduler advanced)."""
    stop: bool
    """Whether any rank voted to stop (the vote travels with the loss in one collective)."""
    figures: dict[str, float] = field(default_factory=dict)
    """Task-specific means over the global batch logged beside the loss (preference rewards and accuracy)."""
    rank_times: list[float] | None = None
    """Each rank's seconds from the start of the step to its end-of-step collective, gathered with the loss
    (None where the backend does not gather them); the watchdog names stragglers from them."""


class Backend(ABC):
    """One rank's model, optimizer and checkpoints on one accelerator stack.

    The loop calls start(), opens the data with dp_rank/dp_size, then build(); after that step(),
    evaluate(), save() and resume() are collective (every rank calls them), export() too.
    """

    name: str
    """Short name for logs and the COMPLETE summary."""
    shares_objects_by_broadcast: bool = True
    """Whether rank 0 may broadcast Python objects (the packed dataset's path); XLA's process group cannot."""
    rank: int
    """Global rank (set by start())."""
    world_size: int
    """All ranks (set by start())."""
    dp_rank: int
    """This rank's data-parallel index: which slice of each global batch it reads (set by start())."""
    dp_size: int
    """Data-parallel degree (set by start())."""

    supports_watchdog: bool = False
    """Whether step() calls arrival_hook and gathers rank_times, and the process group has a key-value store the
    watchdog can use (train/watchdog.py)."""
    arrival_hook: Callable[[], None] | None = None
    """Called by step() just before this rank enters the end-of-step collective (the watchdog's progress report)."""

    def __init__(self, job: JobConfig, plan: Plan):
        self.job, self.plan = job, plan

    @abstractmethod
    def start(self) -> None:
        """Join the process group and lay out the ranks (no model yet); sets rank, world_size, dp_rank, dp_size."""

    @property
    def is_main(self) -> bool:
        """Rank 0 writes the shared files (metrics, summary, marker)."""
        return self.rank == 0

    @abstractmethod
    def build(self, *, document_eos: int | None = None) -> None:
        """Build the model (seeded, or from model.pretrained_path), optimizer and scheduler.

        document_eos: with training.data.document_masking, the EOS id that ends each packed document.
        """

    @abstractmethod
    def step(self, rows: list[Rows], *, stop_vote: bool) -> StepResult:
        """Forward, backward and one optimizer and scheduler step over this rank's micro-batches."""

    @abstractmethod
    def evaluate(self, rows: list[Rows]) -> float:
        """Mean loss per target token over every rank's held-out rows (no gradients)."""

    @abstractmethod
    def save(self, step: int, *, loss: float) -> Path | None:
        """Write a complete checkpoint of step atomically; returns its folder. With training.checkpoint.mode=async
        (where the backend has it) the save only starts (None): it completes in the background, and wait_for_saves()
        waits for it."""

    def wait_for_saves(self) -> None:
        """Wait until every save started is complete (async saves; nothing to wait for otherwise). Collective."""
        return None

    @abstractmethod
    def resume(self) -> int:
        """Restore the newest complete checkpoint when training.checkpoint.resume is set; returns its step (0: none)."""

    @abstractmethod
    def load_for_eval(self) -> tuple[str, int | None]:
        """For task=eval: load the model to evaluate (model.pretrained_path, else the newest checkpoint);
        returns (what was loaded, its training step or None)."""

    @abstractmethod
    def export(self, out_dir: Path, job_path: str) -> dict:
        """After the last step: the trained model for users (a Hugging Face folder, or the command that makes one);
        returns the fields it adds to the run's summary."""

    def memory_gib(self) -> float | None:
        """Peak device memory so far, where the backend can read it."""
        return None

    def measures_accelerator_memory(self) -> bool:
        """Whether memory_gib is an accelerator's allocator peak, comparable with the plan's estimate."""
        return False

    def evaluation_figures(self) -> dict[str, float]:
        """Task-specific means of the last evaluate() (preference rewards and accuracy), logged with val_loss."""
        return {}

    @abstractmethod
    def barrier(self) -> None:
        """Wait for every rank."""

    @abstractmethod
    def close(self) -> None:
        """Leave the process group (every rank)."""


def global_target_tokens(targets: list[torch.Tensor], dp_sum, dp_size: int, *, masked: bool) -> float:
    """Target tokens of the whole global batch, from this rank's targets.

    Without loss masks every replica holds the same count, so no collective is needed; with them
    (SFT prompts, padding) dp_sum adds the counts over the data-parallel ranks.
    """
    tokens = sum(target_count(t) for t in targets)
    return dp_sum(tokens) if masked else tokens * dp_size


def regroup_rows(batches: list[tuple[torch.Tensor, torch.Tensor]],
                 rows_per_call: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(ids, targets) batches re-cut to the rows one pipeline call takes (a remainder is left out)."""
    if not batches:
        return []
    ids = torch.cat([b[0] for b in batches])
    targets = torch.cat([b[1] for b in batches])
    usable = len(ids) - len(ids) % rows_per_call
    return [(ids[i:i + rows_per_call], targets[i:i + rows_per_call]) for i in range(0, usable, rows_per_call)]


BACKENDS = {
    TORCH_ENGINE: "llm_launch.train.gpu.backend:TorchBackend",
    NXD_ENGINE: "llm_launch.train.neuron.backend:NeuronBackend",
}
"""Engine name -> its class, imported only when a job uses it (torch-xla exists only on Trainium 1 hosts)."""


def backend_name(job: JobConfig) -> str:
    """The engine a job runs on: nxd on Trainium's legacy stack, torch everywhere else (GPU, CPU, Trainium native)."""
    return engine_of(job)


def open_backend(job: JobConfig, plan: Plan) -> Backend:
    """The job's backend, not started yet."""
    module, cls = BACKENDS[backend_name(job)].split(":")
    return getattr(importlib.import_module(module), cls)(job, plan)
