"""An output folder holding another task's job is never reused by accident."""


def test_eval_into_a_training_runs_folder_is_refused(cli, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "job.yaml").write_text("training:\n  task: cpt\n")
    result = cli("task=eval")
    assert result.returncode == 2
    assert "output_dir:" in result.stderr and "task=cpt job" in result.stderr
    assert cli("task=cpt").returncode == 0  # the same task may resume or extend its run



HEAD_1 = """
import sys
from llm_launch.launcher.cli import main

class Head1:
    \"\"\"stdout after `| head -1` has read its line and gone: the first write lands, every later one fails.\"\"\"
    def __init__(self):
        self.writes = 0
    def write(self, text):
        self.writes += 1
        if self.writes > 1:
            raise BrokenPipeError(32, "Broken pipe")
        return len(text)
    def flush(self):
        pass
    def isatty(self):
        return False
    def fileno(self):
        return 1

sys.stdout = Head1()
sys.argv = ["llm-launch", *sys.argv[1:]]
main()
"""


def test_a_reader_that_stops_reading_the_plan_is_not_blamed_on_output_dir(tmp_path):
    """`llm-launch action=plan | head -1`: the closed pipe ends the run quietly (exit 1, as Python's SIGPIPE
    note advises), not as an output_dir problem after Hydra's error line."""
    import subprocess
    import sys

    from llm_launch.launcher import PROJECT_ROOT

    done = subprocess.run([sys.executable, "-c", HEAD_1, "action=plan", f"output_dir={tmp_path / 'out'}"],
                          capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert done.returncode == 1, done.stderr
    assert done.stderr == ""
