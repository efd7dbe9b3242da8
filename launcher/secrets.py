"""Keeps secrets out of what llm-launch writes: job.yaml, plan.json and every rendered file.

Two rules:
- No config value may come from `${oc.env:...}`. OmegaConf resolves it when the config is composed,
  so the environment's value would be written, as a literal, into job.yaml and every file rendered
  from it. Credentials reach a job through its platform instead: the SageMaker execution role, an
  EKS service account, the Slurm job's environment.
- No written file may hold the value of a well-known secret variable of this environment (AWS
  credentials, Hugging Face, Weights & Biases and MLflow tokens), however it got into the config.
  The file is not written; the error names the variable, never its value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

SECRET_VARIABLES = (
    "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
    "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_TOKEN",
    "WANDB_API_KEY", "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_PASSWORD", "DATABRICKS_TOKEN",
)
"""Environment variables whose values must never appear in a written file (documented by AWS, Hugging
Face, W&B and MLflow as credentials)."""
MIN_SECRET_CHARS = 12
"""Shorter values are ignored (test placeholders such as AWS_SECRET_ACCESS_KEY=testing would match
everywhere); real keys and tokens are 20 to several hundred characters."""
ENV_INTERPOLATION = re.compile(r"\$\{\s*oc\.env\s*:\s*([^,}\s]*)")


class SecretInFile(Exception):
    """A file about to be written holds a secret's value; the message names the variable, not the value."""


def string_leaves(node: object, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(key path, value) of every string in a config container (dicts and lists)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from string_leaves(value, f"{prefix}{key}.")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from string_leaves(value, f"{prefix}{i}.")
    elif isinstance(node, str):
        yield prefix.rstrip("."), node


def env_interpolations(container: object) -> Iterator[tuple[str, str]]:
    """(key path, variable) of every ${oc.env:VAR} in an unresolved config container."""
    for key, value in string_leaves(container):
        for match in ENV_INTERPOLATION.finditer(value):
            yield key, match.group(1)


def secret_fields(container: object) -> Iterator[tuple[str, str]]:
    """(key path, variable) of every config string holding a well-known secret's value."""
    for key, value in string_leaves(container):
        for name in secrets_in(value):
            yield key, name


def secret_field_message(variable: str) -> str:
    return (f"holds the value of ${variable}, which would be written into job.yaml and every rendered file; "
            "remove it and give credentials to the job through its platform")


def env_interpolation_message(variable: str) -> str:
    return (f"takes its value from the environment (${{oc.env:{variable}}}), which would write it into job.yaml "
            "and every rendered file; pass the value itself, and give credentials to the job through its "
            "platform (SageMaker role, EKS service account, the Slurm job's environment)")


def secret_values() -> dict[str, str]:
    """Well-known secret variables set in this environment, by name (values long enough to be real)."""
    return {name: os.environ[name] for name in SECRET_VARIABLES
            if len(os.environ.get(name, "").strip()) >= MIN_SECRET_CHARS}


def secrets_in(text: str) -> list[str]:
    """Names of the well-known secret variables whose values appear in text."""
    return [name for name, value in secret_values().items() if value.strip() in text]


def refuse_secrets(path: object, text: str) -> None:
    """Raise SecretInFile if text holds a secret's value (called before every file llm-launch writes)."""
    found = secrets_in(text)
    if found:
        raise SecretInFile(f"refusing to write {path}: it would hold the value of ${', $'.join(found)}; remove that "
                           "value from the config and give credentials to the job through its platform")
