"""What each task of a stage drops or cannot read, per source, saved beside the intermediates.

Every step that drops documents keeps a TaskReport for the task it runs and saves it when its input is
exhausted, as <work>/reports/<step>/<rank>.json (any fsspec folder: local, shared FS or s3://). A task that
dies saves nothing and is rerun whole, so the merged reports count every document once.
"""

from __future__ import annotations

import json
from collections import defaultdict

from datatrove.io import DataFolder, get_datafolder
from datatrove.pipeline.base import PipelineStep
from llm_launch.launcher.jsonl import Tally

REPORTS = "reports"


class TaskReport:
    """Counts per source (documents_read, bad_input, filtered, duplicates, kept, ...) and a Tally of kinds."""

    def __init__(self) -> None:
        self.counts: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.tally = Tally()

    def count(self, source: int, key: str, value: int = 1) -> None:
        self.counts[source][key] += value

    def drop(self, source: int, key: str, kind: str, where: str, detail: str = "") -> None:
        """One document of source counted under key (e.g. filtered) and in the tally under kind."""
        self.count(source, key)
        self.tally.add(kind, where, detail)

    def to_dict(self) -> dict:
        return {"counts": {str(s): dict(c) for s, c in sorted(self.counts.items())}, "tally": self.tally.to_dict()}

    def save(self, work: str | DataFolder, step: str, rank: int) -> None:
        with get_datafolder(work).open(f"{REPORTS}/{step}/{rank:05d}.json", "w") as f:
            f.write(json.dumps(self.to_dict()))


def merge_reports(work: str | DataFolder, step: str) -> TaskReport:
    """The sum of every task's report of a step."""
    folder = get_datafolder(work)
    merged = TaskReport()
    for name in sorted(folder.list_files(f"{REPORTS}/{step}", glob_pattern="*.json")):
        with folder.open(name, "r") as f:
            data = json.loads(f.read())
        for source, counts in data["counts"].items():
            for key, value in counts.items():
                merged.count(int(source), key, value)
        merged.tally.merge(Tally.from_dict(data["tally"]))
    return merged


class ReportingStep(PipelineStep):
    """A pipeline step that saves a TaskReport of what it dropped or counted under the work folder."""

    def __init__(self, work: str):
        super().__init__()
        self.work = work
