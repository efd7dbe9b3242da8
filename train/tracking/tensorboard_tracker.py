"""TensorBoard event files under output_dir/tensorboard (`tensorboard --logdir outputs/`): train/* and val/*
scalars per logged step; the job and the plan as text at step 0, the summary as text at the end."""

from __future__ import annotations

import json
from pathlib import Path

from llm_launch.launcher.config.schema import JobConfig
from llm_launch.train.tracking import job_dict, numbers

TENSORBOARD_DIR = "tensorboard"


class TensorBoardTracker:
    def __init__(self, job: JobConfig | None, plan: dict, out_dir: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(out_dir / TENSORBOARD_DIR))
        if job is not None:
            self.writer.add_text("job", _code(job_dict(job)), 0)
            self.writer.add_text("plan", _code(plan), 0)
        self.last_step = 0

    def log(self, record: dict, step: int) -> None:
        for key, value in numbers(record).items():
            group = "val" if key.startswith("val_") else "device" if key.startswith("neuron") else "train"
            self.writer.add_scalar(f"{group}/{key}", value, step)
        self.last_step = step

    def finish(self, summary: dict | None) -> None:
        if summary is not None:
            self.writer.add_text("summary", _code(summary), self.last_step)
        self.writer.close()


def _code(data: dict) -> str:
    """JSON as a Markdown code block (TensorBoard renders text as Markdown)."""
    return "    " + json.dumps(data, indent=2, default=str).replace("\n", "\n    ")


def start(job: JobConfig | None, plan: dict, out_dir: Path) -> TensorBoardTracker:
    return TensorBoardTracker(job, plan, out_dir)
