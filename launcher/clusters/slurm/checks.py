"""Checks of the Slurm settings an sbatch script relies on, reported with every other problem.

sbatch options: https://slurm.schedmd.com/sbatch.html
"""

from __future__ import annotations

import re

from launcher.config.schema import JobConfig
from launcher.problems import Findings

SLURM_NAME = re.compile(r"[A-Za-z0-9_.-]+")
SLURM_TIME = re.compile(r"(\d+-)?\d+(:\d{2}){0,2}|\d+-\d+|UNLIMITED|INFINITE")


def check_slurm(job: JobConfig, out: Findings) -> None:
    """Names and time limit usable in #SBATCH lines, and a shared folder every node reads."""
    slurm = job.cluster.slurm
    for key, value in (("cluster.slurm.partition", slurm.partition), ("cluster.slurm.account", slurm.account)):
        if value is not None and not SLURM_NAME.fullmatch(value):
            out.error(key, f"'{value}' is not a Slurm name (letters, digits, '_', '.', '-')")
    if not SLURM_TIME.fullmatch(slurm.time_limit):
        out.error("cluster.slurm.time_limit", f"'{slurm.time_limit}' is not an sbatch --time such as 5-00:00:00")
    shared = slurm.shared_dir
    if not shared.startswith("/") or any(c in shared for c in ",:\n"):
        out.error("cluster.slurm.shared_dir", f"'{shared}' must be an absolute path without ',' or ':'")
    elif slurm.container_image and any(c in job.output_dir for c in ",:"):
        out.error("output_dir", "pyxis cannot mount a path with ',' or ':'; pick another output_dir")
    elif not job.output_dir.startswith(shared.rstrip("/") + "/"):
        out.warn("output_dir", f"{job.output_dir} is not under {shared}: every node must be able to read job.yaml "
                 "there; set output_dir=<shared_dir>/... unless that folder is shared too")
