"""An output folder holding another task's job is never reused by accident."""


def test_eval_into_a_training_runs_folder_is_refused(cli, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "job.yaml").write_text("training:\n  task: cpt\n")
    result = cli("task=eval")
    assert result.returncode == 2
    assert "output_dir:" in result.stderr and "task=cpt job" in result.stderr
    assert cli("task=cpt").returncode == 0  # the same task may resume or extend its run
