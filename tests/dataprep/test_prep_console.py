"""What a prepare run prints and records: our progress lines on the console, not DataTrove's per-task INFO logs
(the pipeline and every task's statistics, which drowned them; dataprep/executors.py TASK_LOCAL_RANK), which stay
in each task's log file; and each filter's and dedup step's statistics under its own name (they were "None")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from llm_launch.dataprep import pipeline
from pipeline_helpers import kjv_source, prep_config


@pytest.mark.parametrize("workers", [1, 2], ids=["in-process", "pool"])
def test_the_console_holds_our_progress_and_the_logs_hold_datatroves(tmp_path, capfd, workers):
    cfg = prep_config(tmp_path / "out", kjv_source(tmp_path / "in"), workers=workers, task_bytes=1,
                      filters__max_duplicate_line_fraction=0.3, output__keep_work=True)
    pipeline.prepare_data(cfg, progress=True)
    out, err = capfd.readouterr()
    console = out + err
    assert "data prep: stage filter: done in" in console and "data prep: stage pack: done in" in console
    assert "Launching pipeline" not in console and "Stats: Task" not in console, console
    fingerprint = json.loads((tmp_path / "out" / "manifest.json").read_text())["fingerprint"]
    logs = Path(pipeline.work_folder(cfg, fingerprint)) / "logs" / "filter"
    assert "Launching pipeline for rank=0" in (logs / "logs" / "task_00000.log").read_text()
    stats = json.loads((logs / "stats.json").read_text())
    names = [step["name"] for step in stats]
    assert "🔻 - FILTER: gopher_quality" in names and "🔻 - FILTER: gopher_repetition" in names, names
    dedup = [step["name"] for step in json.loads((logs.parent / "dedup_filter" / "stats.json").read_text())]
    assert not [name for name in [*names, *dedup] if name.endswith("None")], (names, dedup)
