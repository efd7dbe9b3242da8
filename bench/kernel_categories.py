"""GPU kernel time by category, from a torch.profiler run: matmul, attention, norm/elementwise, optimizer,
communication, other, and idle (the profiled window's wall time no kernel ran).

categorize() reads a kernel's name (cuBLAS/CUTLASS GEMMs, flash/efficient attention, Triton fused kernels
from torch.compile, multi-tensor-apply optimizer kernels, NCCL); kernel_table() folds (name, microseconds)
rows into a table. Pure Python, so tests/bench/test_kernel_categories.py checks it on a made-up table.
"""

from __future__ import annotations

CATEGORIES = ("matmul", "attention", "norm/elementwise", "optimizer", "communication", "other", "idle")

_RULES = (  # first match wins; lower-case substrings of kernel names
    ("communication", ("nccl", "allreduce", "all_reduce", "allgather", "all_gather", "reducescatter",
                       "reduce_scatter", "sendrecv")),
    ("attention", ("flash", "fmha", "attention", "sdpa", "_efficient_attention", "cudnn_sdp")),
    ("optimizer", ("multi_tensor_apply", "adam", "foreach", "fused_sgd", "lerp")),
    ("matmul", ("gemm", "cutlass", "cublas", "sm90_xmma", "sm80_xmma", "xmma", "nvjet", "scaled_mm", "matmul",
                "_mm_", "wgmma")),
    ("norm/elementwise", ("triton", "elementwise", "vectorized", "reduce", "norm", "softmax", "cross_entropy",
                          "nll_loss", "log_softmax", "copy", "cat", "fill", "index", "scatter", "gather", "silu",
                          "rotary", "pow", "mul", "add", "cast", "unrolled")),
)


def categorize(kernel_name: str) -> str:
    """The category of one GPU kernel, from its name."""
    name = kernel_name.lower()
    for category, needles in _RULES:
        if any(needle in name for needle in needles):
            return category
    return "other"


def kernel_table(kernels: list[tuple[str, float]], window_us: float) -> dict[str, dict[str, float]]:
    """{category: {us, share}} over the profiled window (wall microseconds): kernel time per category, and idle as the
    window less all kernel time (kernels on several streams may overlap, so idle is at least 0)."""
    totals = dict.fromkeys(CATEGORIES, 0.0)
    for name, us in kernels:
        totals[categorize(name)] += us
    busy = sum(totals.values())
    totals["idle"] = max(0.0, window_us - busy)
    span = max(window_us, busy) or 1.0
    return {c: {"us": round(totals[c], 1), "share": round(totals[c] / span, 4)} for c in CATEGORIES}


def markdown_table(table: dict[str, dict[str, float]]) -> str:
    lines = ["| category | kernel ms | share |", "|---|---:|---:|"]
    lines += [f"| {c} | {v['us'] / 1000:.1f} | {v['share']:.1%} |" for c, v in table.items()]
    return "\n".join(lines) + "\n"


def kernels_from_profiler(profiler) -> tuple[list[tuple[str, float]], float]:
    """(GPU kernel (name, us) rows, the window's wall us) from a finished torch.profiler.profile."""
    rows, starts, ends = [], [], []
    for event in profiler.events():
        if getattr(event, "device_type", None) is not None and str(event.device_type).endswith("CUDA"):
            rows.append((event.name, event.time_range.elapsed_us()))
            starts.append(event.time_range.start)
            ends.append(event.time_range.end)
    window = (max(ends) - min(starts)) if rows else 0.0
    return rows, float(window)
