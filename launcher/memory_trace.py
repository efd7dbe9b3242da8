"""plan.memory=traced, from the launcher's side: the trace runs in a Python of its own.

The trace builds the job's real model with the GPU engine on fake tensors (llm_launch.train.gpu.memory_trace,
which imports torch and the engine); the launcher never imports the job's packages, so it writes the
resolved job.yaml, starts `python -P -m llm_launch.train.gpu.memory_trace --job job.yaml --out peak.json`
(the entrypoint reads the same job.yaml the ranks would) and turns the peak by category into the plan's
MemoryEstimate.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.jobfile import JOB_FILE, write_job
from llm_launch.launcher.memory import MemoryEstimate
from llm_launch.launcher.plan import make_plan, rank_capacity_bytes

TRACE_MODULE = "llm_launch.train.gpu.memory_trace"
PEAK_FILE = "peak.json"


def traced_memory(job: JobConfig) -> MemoryEstimate:
    """The plan's MemoryEstimate from a trace of one step; a failed trace ends the command (exit 1) after its
    own error, which it printed."""
    with tempfile.TemporaryDirectory(prefix="llm-launch-trace-") as tmp:
        job_yaml = write_job(job, Path(tmp) / JOB_FILE)
        peak_file = Path(tmp) / PEAK_FILE
        # -P: the working directory is not put on sys.path (docs/imports.md)
        done = subprocess.run([sys.executable, "-P", "-m", TRACE_MODULE, "--job", str(job_yaml), "--out",
                               str(peak_file)], check=False)
        if done.returncode != 0:
            sys.exit(f"llm-launch: the memory trace ({TRACE_MODULE}) failed with exit code {done.returncode}; "
                     "its error is above (or set plan.memory=estimate)")
        peak = json.loads(peak_file.read_text(encoding="utf-8"))
    return MemoryEstimate(weights=peak["parameters"], gradients=peak["gradients"], optimizer=peak["optimizer"],
                          activations=peak["activations"],
                          capacity=rank_capacity_bytes(job, make_plan(job).ranks_per_node), source="traced",
                          temporaries=peak["temporaries"])
