"""job.yaml: the resolved job the launcher writes and every training rank reads."""

from __future__ import annotations

import os
from pathlib import Path

from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.dialect import resolve_dialect
from llm_launch.launcher.secrets import refuse_secrets
from omegaconf import OmegaConf

JOB_FILE = "job.yaml"
COMPLETE_MARKER = "COMPLETE"
"""Written by rank 0 as the last act of a finished job: a JSON summary of the run."""
LATEST = "latest"
"""The pointer file in training.checkpoint.dir naming the newest complete checkpoint (the trainer writes it,
llm_launch.train.checkpoint_integrity; the Slurm status reads it for its resume hint)."""


def write_text_atomic(path: Path, text: str) -> None:
    """Write a file through a temporary sibling and a rename, so readers never see half of it.

    Refuses (SecretInFile) text that holds the value of a well-known secret variable (launcher/secrets.py).
    """
    refuse_secrets(path, text)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def job_to_yaml(job: JobConfig) -> str:
    """The job as YAML, every value resolved and typed as the schema says."""
    return OmegaConf.to_yaml(OmegaConf.structured(job))


def write_job(job: JobConfig, path: Path) -> Path:
    """Write job.yaml atomically and return its path."""
    write_text_atomic(path, job_to_yaml(job))
    return path


def read_job(path: str | Path) -> JobConfig:
    """Load a job.yaml back into the typed JobConfig (the schema rejects unknown keys), with the recipe dialect
    resolved for its backend (llm_launch.launcher.dialect), as the launcher wrote it."""
    merged = OmegaConf.merge(OmegaConf.structured(JobConfig), OmegaConf.load(path))
    return resolve_dialect(OmegaConf.to_object(merged))
