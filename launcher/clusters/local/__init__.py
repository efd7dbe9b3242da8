"""This machine: torchrun started here, on the job's paths as given (made absolute).

render.py writes launch.sh; run.py runs torchrun and judges the run by its completion marker.
"""

from __future__ import annotations

import json
import re
from contextlib import AbstractContextManager
from dataclasses import replace
from pathlib import Path

from llm_launch.launcher.clusters.base import Cluster, RunnerError
from llm_launch.launcher.clusters.local.render import render_local
from llm_launch.launcher.clusters.local.run import hold_output_dir, run_local
from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.job_record import RECORD_KEY, compare, job_record
from llm_launch.launcher.plan import Plan
from llm_launch.launcher.problems import Findings
from llm_launch.launcher.progress import PROGRESS_FILE, read_progress_file, status_line
from llm_launch.launcher.run_lock import in_use


def _absolute(path: str | None) -> str | None:
    if path is None or "://" in path:
        return path
    return str(Path(path).expanduser().resolve())


def check_output_dir(job: JobConfig, out: Findings) -> None:
    """An output folder that holds another task's job is not reused (its files would be replaced)."""
    previous = Path(job.output_dir) / "job.yaml"
    if not previous.is_file():
        return
    import yaml

    try:
        previous_job = yaml.safe_load(previous.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return
    task = previous_job.get("task") or previous_job.get("training", {}).get("task")  # older job.yaml files
    if task and task != job.task:
        out.error("output_dir", f"{job.output_dir} holds a task={task} job whose files this "
                  f"{job.task} job would replace; set output_dir=<another folder>")


def check_resume(job: JobConfig, out: Findings) -> None:
    """A resume into another job is refused already at plan time: the record of the checkpoint `latest` names
    (launcher/job_record.py) against this job's; the ranks check again, with the layout, before loading it."""
    ckpt = job.training.checkpoint
    if not ckpt.resume or not ckpt.dir or job.task not in ("cpt", "sft", "dpo"):
        return
    root = Path(ckpt.dir)
    try:
        name = (root / "latest").read_text(encoding="utf-8").strip()
        if not re.fullmatch(r"step_\d{8}", name):
            return  # the job refuses a pointer out of its folder in one line when it starts
        state = json.loads((root / name / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    saved = state.get(RECORD_KEY) if isinstance(state, dict) else None
    if not saved:
        return
    refusals, notes = compare(saved, job_record(job), list(ckpt.allow_changes), str(root / name))
    for key, message in refusals:
        out.error(key, message)
    for note in notes:
        out.warn("training.checkpoint.allow_changes", note)


class LocalCluster(Cluster):
    """cluster=local: this machine, one node."""

    kind = "local"
    runs_here = True
    default_action = "submit"

    def resolve_paths(self, job: JobConfig) -> None:
        """Relative paths are taken from where llm-launch runs; checkpoints default to <output_dir>/checkpoints."""
        data = job.training.data
        job.training.data = replace(data, train_path=_absolute(data.train_path),
                                    valid_path=_absolute(data.valid_path),
                                    tokenizer_path=_absolute(data.tokenizer_path))
        job.model.pretrained_path = _absolute(job.model.pretrained_path)
        prep = job.data_prep
        for source in prep.sources:
            source.path = _absolute(source.path)
        prep.tokenizer_path = _absolute(prep.tokenizer_path)
        prep.output.dir = _absolute(prep.output.dir)
        ckpt = job.training.checkpoint
        ckpt.dir = _absolute(ckpt.dir) if ckpt.dir else str(Path(job.output_dir) / "checkpoints")

    def check(self, job: JobConfig, out: Findings) -> None:
        if job.trainer.num_nodes > 1:
            out.error("trainer.num_nodes", "a local run uses this one machine; set trainer.num_nodes=1 or pick "
                      "cluster=sagemaker, eks or slurm")
        check_output_dir(job, out)
        check_resume(job, out)
        busy = in_use(Path(job.output_dir), "output_dir")
        if busy:
            out.error("output_dir", busy)

    def status(self, record: dict, out_dir: Path) -> None:
        """Where the run in out_dir is: step / max_steps, pace, ETA and goodput, from its progress.json."""
        progress = read_progress_file(out_dir / PROGRESS_FILE)
        if progress is None:
            raise RunnerError(f"no run has reported progress in {out_dir} ({PROGRESS_FILE} is written from the first "
                              "logged step); start one with action=submit")
        state = "running" if in_use(out_dir, "output_dir") else "not running"
        print(f"{out_dir}: {state}; {status_line(progress)}")

    def hold_output_dir(self, out_dir: Path) -> AbstractContextManager:
        """The job runs here: its folder is locked before plan.json is written and until torchrun ends."""
        return hold_output_dir(out_dir)

    def render(self, job: JobConfig, plan: Plan, out_dir: Path, job_yaml: Path) -> list[Path]:
        return render_local(job, plan, out_dir, job_yaml)

    def submit(self, job: JobConfig, plan: Plan, out_dir: Path, job_yaml: Path) -> None:
        summary = run_local(job, plan, out_dir, job_yaml)
        print(f"llm-launch: done: {json.dumps(summary)}")
