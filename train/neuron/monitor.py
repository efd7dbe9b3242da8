"""NeuronCore utilisation and device memory beside training, from neuron-monitor (aws-neuronx-tools).

neuron-monitor streams one JSON report per period to stdout. Its schema, as the Neuron Monitor User Guide
documents it (https://awsdocs-neuron.readthedocs-hosted.com/en/latest/tools/neuron-sys-tools/neuron-monitor-user-guide.html):
neuron_runtime_data is a list with one entry per Neuron runtime (process) on the node, each with a report
holding neuroncore_counters.neuroncores_in_use (per NeuronCore index: neuroncore_utilization, a percentage
over the period) and memory_used.neuron_runtime_used_bytes (host and neuron_device totals in bytes).
The newest report's figures join every logged training record (metrics.jsonl, TensorBoard under device/).
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import tempfile
import threading
from pathlib import Path

COMMAND = "neuron-monitor"
PERIOD = "1s"
GIB = 1024**3


def monitor_config(period: str = PERIOD) -> dict:
    """The neuron-monitor configuration: NeuronCore counters and memory of every runtime, each period."""
    return {"period": period,
            "neuron_runtimes": [{"tag_filter": ".*", "metrics": [{"type": "neuroncore_counters"},
                                                                 {"type": "memory_used"}]}],
            "system_metrics": []}


def device_figures(report: dict) -> dict[str, float]:
    """NeuronCore utilisation (mean, min and max over the cores in use, percent) and memory (GiB on the devices
    and on the host, summed over runtimes) of one neuron-monitor report; empty when it has no runtime data."""
    utilisation: list[float] = []
    device_bytes = host_bytes = 0
    for runtime in report.get("neuron_runtime_data") or []:
        body = runtime.get("report") or {}
        cores = (body.get("neuroncore_counters") or {}).get("neuroncores_in_use") or {}
        utilisation += [float(c["neuroncore_utilization"]) for c in cores.values()
                        if isinstance(c, dict) and c.get("neuroncore_utilization") is not None]
        used = (body.get("memory_used") or {}).get("neuron_runtime_used_bytes") or {}
        device_bytes += int(used.get("neuron_device") or 0)
        host_bytes += int(used.get("host") or 0)
    if not utilisation and not device_bytes:
        return {}
    figures = {"neuron_device_memory_gib": device_bytes / GIB, "neuron_host_memory_gib": host_bytes / GIB}
    if utilisation:
        figures.update(neuroncore_util_mean=statistics.fmean(utilisation), neuroncore_util_min=min(utilisation),
                       neuroncore_util_max=max(utilisation), neuroncores_in_use=float(len(utilisation)))
    return figures


def missing_tool() -> str | None:
    """Why neuron-monitor cannot run here, or None."""
    if shutil.which(COMMAND) is None:
        return (f"neuron.monitor=true but {COMMAND} is not on PATH; install aws-neuronx-tools in the image or set "
                "neuron.monitor=false")
    return None


class NeuronMonitor:
    """neuron-monitor as a child process; record() gives the newest report's figures."""

    def __init__(self, command: str = COMMAND, period: str = PERIOD):
        self._config = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
        json.dump(monitor_config(period), self._config)
        self._config.close()
        self._latest: dict = {}
        self._process = subprocess.Popen([command, "-c", self._config.name], stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self._process.stdout:
            try:
                figures = device_figures(json.loads(line))
            except ValueError:
                continue
            if figures:
                self._latest = figures

    def record(self) -> dict[str, float]:
        return dict(self._latest)

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
        Path(self._config.name).unlink(missing_ok=True)
