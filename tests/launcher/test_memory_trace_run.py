"""plan.memory=traced from the launcher's side (launcher/memory_trace.py): the trace runs as a program of its own;
one that fails ends the command with exit 1 and a line naming it. The trace itself: tests/train/gpu/test_memory_trace.py."""

from __future__ import annotations

import pytest
from composed_job import recipe_job
from llm_launch.launcher import memory_trace


def test_a_failed_trace_ends_the_command_after_its_own_error(monkeypatch, capfd):
    monkeypatch.setattr(memory_trace, "TRACE_MODULE", "llm_launch.launcher.no_such_module")
    with pytest.raises(SystemExit) as ended:
        memory_trace.traced_memory(recipe_job("smoke_allreduce"))
    assert str(ended.value).startswith("llm-launch: the memory trace (llm_launch.launcher.no_such_module) failed "
                                       "with exit code 1; its error is above")
    assert "No module named llm_launch.launcher.no_such_module" in capfd.readouterr().err


def test_pipeline_layouts_are_traced_not_refused(job_for):
    """plan.memory=traced refused pp > 1 until the trace replayed the pipeline schedule (train/gpu/memory_trace.py);
    suggest's best 8B and 70B layouts are pipelined. The traced peaks: tests/launcher/test_memory_calibration.py."""
    from llm_launch.launcher.problems import Findings
    from llm_launch.launcher.validate import _check_traced_memory

    out = Findings()
    _check_traced_memory(job_for("parallelism.pp=2", "parallelism.pp_schedule=interleaved_1f1b",
                                 "parallelism.virtual_pp=2", "plan.memory=traced"), out)
    assert out.problems == []
