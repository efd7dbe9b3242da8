"""Profile 3 steps of a training job as the entrypoint runs it (bench/gpu_check.py's profile section).

python bench/gpu_profile.py ENTRY JOB_YAML OUT_DIR under torchrun: runs the job, and on rank 0 profiles the
three steps after the first three (compile and warm-up) with torch.profiler (CPU and CUDA activities); writes
OUT_DIR/trace.json (chrome trace), OUT_DIR/kernels.json and OUT_DIR/kernels.md (kernel time by category,
bench/kernel_categories.py).
"""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import kernel_categories  # noqa: E402
import llm_launch.train.gpu.backend as backend  # noqa: E402
import torch  # noqa: E402
from llm_launch.train.entry import run_entrypoint  # noqa: E402

WARMUP, PROFILED = 3, 3
entry, job_yaml, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
out.mkdir(parents=True, exist_ok=True)
state = {"steps": 0, "profiler": None}
original = backend.GpuBackend.step
main_rank = int(os.environ.get("RANK", 0)) == 0


def profiled(self, *args, **kwargs):
    if main_rank and state["steps"] == WARMUP:
        activities = [torch.profiler.ProfilerActivity.CPU]
        if torch.cuda.is_available():
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        state["profiler"] = torch.profiler.profile(activities=activities)
        state["profiler"].__enter__()
    result = original(self, *args, **kwargs)
    state["steps"] += 1
    if main_rank and state["steps"] == WARMUP + PROFILED and state["profiler"] is not None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        profiler = state["profiler"]
        profiler.__exit__(None, None, None)
        profiler.export_chrome_trace(str(out / "trace.json"))
        rows, window = kernel_categories.kernels_from_profiler(profiler)
        table = kernel_categories.kernel_table(rows, window)
        (out / "kernels.json").write_text(json.dumps({"steps": PROFILED, "window_us": window, "table": table}, indent=2))
        (out / "kernels.md").write_text(kernel_categories.markdown_table(table))
    return result


backend.GpuBackend.step = profiled
run_entrypoint(entry, ["--job", job_yaml])
