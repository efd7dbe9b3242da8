"""Remote names made valid deterministically: the same job name always gives the same remote name.

A name that had to change (odd characters, too long) keeps a short hash of the original, so two
different job names never collapse into one remote name.
"""

from __future__ import annotations

import hashlib
import re

HASH_CHARS = 8


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8")).hexdigest()[:HASH_CHARS]


def _fit(cleaned: str, original: str, max_len: int) -> str:
    if cleaned == original and len(cleaned) <= max_len:
        return cleaned
    head = cleaned[: max_len - HASH_CHARS - 1].rstrip("-")
    return f"{head}-{_digest(original)}" if head else _digest(original)


def sagemaker_job_name(name: str, max_len: int) -> str:
    """A SageMaker TrainingJobName base: [a-zA-Z0-9](-*[a-zA-Z0-9])*, at most max_len characters."""
    cleaned = re.sub(r"[^a-zA-Z0-9]+", "-", name).strip("-")
    return _fit(cleaned, name, max_len)


def rfc1035_name(name: str, max_len: int) -> str:
    """A Kubernetes RFC 1035 label: lower-case letters, digits and '-', starting with a letter."""
    cleaned = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    if cleaned and not cleaned[0].isalpha():
        cleaned = f"j-{cleaned}"
    result = _fit(cleaned, name, max_len)
    return result if result[0].isalpha() else f"j{result[: max_len - 1]}"


def slurm_job_name(name: str, max_len: int = 64) -> str:
    """A Slurm --job-name made of characters that need no quoting in an #SBATCH line."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")
    return _fit(cleaned, name, max_len) if cleaned else _digest(name)
