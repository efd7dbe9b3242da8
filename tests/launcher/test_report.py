"""The plan and suggestion tables print every value whole at any terminal width (issue 23: long values were cut
with an ellipsis)."""

from __future__ import annotations

import io

from llm_launch.launcher.report import plan_table
from llm_launch.launcher.validate import validate
from rich.console import Console

LONG_PATH = "/fsx/" + "/".join(f"a-rather-long-folder-name-{i}" for i in range(6)) + "/tokenized-data-without-spaces"


def _cells(text: str) -> str:
    """The value column of a two-column rich table, its wrapped lines joined back together."""
    cells = [line.split("│")[2].strip() for line in text.splitlines() if line.count("│") == 3]
    return "".join(cells)


def test_a_long_value_is_folded_not_cut(job_for):
    findings, plan = validate(job_for("recipe=llama3_8b_cpt_trn1"))
    url = "https://aws.amazon.com/sagemaker/pricing/?" + "x" * 120
    plan.warnings.extend([f"data at {LONG_PATH}", url])
    for width in (60, 80, 200):
        console = Console(record=True, width=width, file=io.StringIO())
        console.print(plan_table(plan))
        text = console.export_text()
        assert "…" not in text, text
        joined = _cells(text)
        assert LONG_PATH in joined and url in joined, text
