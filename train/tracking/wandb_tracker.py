"""Weights & Biases: one run per job (resumed with the job), the resolved job and the plan as its config,
every logged metric by step, and metrics.json as its summary and a saved file.

The API key never enters the config: WANDB_API_KEY in the job's environment, or an AWS Secrets Manager
secret named by tracking.wandb.api_key_secret, read with the job's own credentials and handed to the client
in this process only. Offline mode needs no key: the run is written under output_dir/wandb for `wandb sync`
(https://docs.wandb.ai/guides/technical-faq/setup/#can-i-run-wandb-offline).
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from llm_launch.launcher.config.schema import JobConfig, WandbMode
from llm_launch.launcher.tracking_checks import WANDB_KEY_VARIABLE, wandb_api_key
from llm_launch.train.tracking import job_dict, numbers

RUN_FILE = "wandb_run.json"


class WandbTracker:
    def __init__(self, job: JobConfig, plan: dict, out_dir: Path):
        import wandb

        cfg = job.tracking.wandb
        online = cfg.mode == WandbMode.online
        if online and not os.environ.get(WANDB_KEY_VARIABLE):
            os.environ[WANDB_KEY_VARIABLE] = wandb_api_key(job)[0] or ""  # this process only; never written
        run_file = out_dir / RUN_FILE
        run_id = json.loads(run_file.read_text())["id"] if run_file.is_file() else uuid.uuid4().hex[:12]
        if not run_file.is_file():
            from llm_launch.launcher.jobfile import write_text_atomic

            write_text_atomic(run_file, json.dumps({"id": run_id}) + "\n")
        self.run = wandb.init(project=cfg.project or job.job_name, entity=cfg.entity, name=job.job_name, id=run_id,
                              resume="allow", dir=str(out_dir), mode=cfg.mode.value,
                              config={"job": job_dict(job), "plan": plan})
        self.out_dir = out_dir

    def log(self, record: dict, step: int) -> None:
        self.run.log(numbers(record), step=step)

    def finish(self, summary: dict | None) -> None:
        if summary is not None:
            self.run.summary.update({k: v for k, v in summary.items() if v is not None})
            self.run.save(str(self.out_dir / "metrics.json"), base_path=str(self.out_dir), policy="now")
        self.run.finish()


def start(job: JobConfig, plan: dict, out_dir: Path) -> WandbTracker:
    return WandbTracker(job, plan, out_dir)
