"""The job's lock hand-over (train/entry.py): the folder the local runner already holds is not taken twice,
however either side spells it (a symlinked output_dir, one with ..); any other holder still refuses the job."""

import os

import pytest
from composed_job import compose_job
from llm_launch.launcher.run_lock import HELD_BY_LAUNCHER_ENV, RunLock
from llm_launch.train.entry import held_folders
from llm_launch.train.errors import JobError


@pytest.mark.parametrize("spelling", ["symlink", "dotdot"])
def test_the_folder_the_launcher_holds_is_its_own_whatever_the_spelling(tmp_path, monkeypatch, spelling):
    real = tmp_path / "runs" / "real"
    real.mkdir(parents=True)
    if spelling == "symlink":
        given = tmp_path / "link"
        given.symlink_to(real, target_is_directory=True)
    else:
        (tmp_path / "runs" / "other").mkdir()
        given = tmp_path / "runs" / "other" / ".." / "real"
    job = compose_job([f"output_dir={given}"], given)  # job.yaml holds the resolved path
    assert job.output_dir == str(real)
    launcher = RunLock(given, "output_dir").acquire()  # what the local runner holds, as the user spelled it
    monkeypatch.setenv(HELD_BY_LAUNCHER_ENV, str(given))
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setattr(job.training.checkpoint, "dir", str(tmp_path / "ckpt"))
    try:
        with held_folders(job):  # refused itself before: "in use by a running job (pid <its own>)"
            assert (tmp_path / "ckpt" / ".llm-launch.lock").is_file()
    finally:
        launcher.release()


def test_a_folder_held_by_someone_else_still_refuses_the_job(tmp_path, monkeypatch):
    job = compose_job([f"output_dir={tmp_path / 'out'}"], tmp_path / "out")
    other = RunLock(tmp_path / "out", "output_dir").acquire()
    monkeypatch.setenv(HELD_BY_LAUNCHER_ENV, str(tmp_path / "elsewhere"))
    monkeypatch.setenv("RANK", "0")
    try:
        with pytest.raises(JobError, match=rf"{tmp_path / 'out'} is in use by a running job \(pid {os.getpid()} "):
            with held_folders(job):
                pass
    finally:
        other.release()
