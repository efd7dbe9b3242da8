"""Per-step metrics as JSON lines (rank 0), one object per logged step."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

METRICS_FILE = "metrics.jsonl"


class MetricsLog:
    """Appends metric records to metrics.jsonl and echoes a short line to stdout."""

    def __init__(self, out_dir: Path, enabled: bool):
        self.enabled = enabled
        self.path = out_dir / METRICS_FILE
        if enabled:
            out_dir.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        with self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(clean) + "\n")
        shown = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in clean.items() if v is not None)
        print(shown, flush=True)


def device_memory_gib(device: torch.device) -> float | None:
    """Peak memory allocated on a GPU so far; None on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1024**3
    return None
