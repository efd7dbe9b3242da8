"""The Neuron backend's checks that need no NxD: resuming only in the layout a checkpoint was written in."""

from __future__ import annotations

import json

import pytest
from composed_job import recipe_job
from llm_launch.launcher.nxd_layout import layout_record
from llm_launch.train.errors import JobError
from llm_launch.train.neuron.backend import NXD_LAYOUT_FILE, check_resume_layout


def _checkpoint(root, step: int, layout: dict) -> None:
    folder = root / f"step_{step:08d}"
    folder.mkdir(parents=True)
    (folder / NXD_LAYOUT_FILE).write_text(json.dumps(layout))


def test_resume_in_the_same_layout_is_accepted(tmp_path):
    job = recipe_job("llama3_8b_cpt_trn1")
    _checkpoint(tmp_path, 100, layout_record(job))
    check_resume_layout(job, str(tmp_path))


def test_resume_in_another_layout_is_refused_naming_what_differs(tmp_path):
    written = recipe_job("llama3_8b_cpt_trn1", "parallelism.tp=8")
    _checkpoint(tmp_path, 100, layout_record(written))
    job = recipe_job("llama3_8b_cpt_trn1", "parallelism.tp=32")
    with pytest.raises(JobError) as refused:
        check_resume_layout(job, str(tmp_path))
    message = str(refused.value)
    assert "step_00000100" in message and "tp=8 (this job: 32)" in message and "\n" not in message
    assert "llm-launch-convert nxd-to-hf" in message
