"""neuron.monitor: a recorded neuron-monitor report (tests/train/neuron/fixtures/neuron_monitor_report.json,
written from the documented schema: https://awsdocs-neuron.readthedocs-hosted.com/en/latest/tools/neuron-sys-tools/
neuron-monitor-user-guide.html) becomes NeuronCore utilisation and device memory in every logged step. neuron-monitor
cannot run without Neuron devices, so the stream test starts a stand-in that prints that report, as the tool does."""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from pathlib import Path

import pytest
from llm_launch.launcher.config.schema import AcceleratorKind, JobConfig
from llm_launch.train.errors import JobError
from llm_launch.train.metrics import MetricsLog
from llm_launch.train.neuron.monitor import device_figures, monitor_config

REPORT = Path(__file__).parent / "fixtures" / "neuron_monitor_report.json"


def test_a_report_gives_utilisation_and_memory_over_every_runtime():
    figures = device_figures(json.loads(REPORT.read_text()))
    assert figures == {"neuroncore_util_mean": pytest.approx(90.0), "neuroncore_util_min": 80.0,
                       "neuroncore_util_max": 100.0, "neuroncores_in_use": 4.0,
                       "neuron_device_memory_gib": 32.0, "neuron_host_memory_gib": 2.0}
    assert device_figures({"neuron_runtime_data": []}) == {}
    assert {m["type"] for m in monitor_config()["neuron_runtimes"][0]["metrics"]} == {"neuroncore_counters",
                                                                                      "memory_used"}


def _stand_in(folder: Path) -> None:
    tool = folder / "neuron-monitor"
    line = json.dumps(json.loads(REPORT.read_text()))
    tool.write_text(f"#!{sys.executable}\nimport sys, time\nassert sys.argv[1] == '-c'\n"
                    f"while True:\n    print({line!r}, flush=True)\n    time.sleep(0.05)\n")
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)


def test_monitor_figures_join_each_logged_step_in_jsonl_and_tensorboard(tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    job = JobConfig(job_name="monitored", output_dir=str(tmp_path))
    job.instance.accelerator = AcceleratorKind.trainium1
    job.neuron.monitor = True
    monkeypatch.setenv("PATH", str(tmp_path), prepend=os.pathsep)
    with pytest.raises(JobError, match="neuron.monitor=true but neuron-monitor is not on PATH"):
        MetricsLog(tmp_path, True, job=job)
    _stand_in(tmp_path)
    log = MetricsLog(tmp_path, True, job=job)
    deadline = time.monotonic() + 30
    while not log.sidecars[0].record() and time.monotonic() < deadline:
        time.sleep(0.05)
    log.write({"step": 1, "loss": 2.5})
    log.write({"step": 1, "val_loss": 2.7})
    log.close()
    train, val = (json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines())
    assert train["neuroncore_util_mean"] == pytest.approx(90.0) and train["neuron_device_memory_gib"] == 32.0
    assert "neuroncore_util_mean" not in val
    events = EventAccumulator(str(tmp_path / "tensorboard")).Reload()
    assert [e.value for e in events.Scalars("device/neuroncore_util_mean")] == [pytest.approx(90.0)]

