"""Plan-time checks of a preference-tuning job (task=dpo) that span sections (training.preference checks its own
ranges in the schema)."""

from __future__ import annotations

from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.problems import Findings


def check_preference_job(job: JobConfig, out: Findings) -> None:
    """What a dpo job needs: a pretrained model and a layout that runs it (llm_launch.launcher.data_inputs checks its records
    are preference pairs, the task table its backend)."""
    if job.model.pretrained_path is None:
        out.warn("model.pretrained_path", "task=dpo without a pretrained model tunes random weights against a random "
                 "reference; set model.pretrained_path to the Hugging Face folder of the model to align")
    if job.parallelism.pp > 1:
        out.error("parallelism.pp", "dpo needs each pair's chosen and rejected sequences on one stage to compare "
                  "them; use parallelism.pp=1 (tp and fsdp shard the model instead)")
