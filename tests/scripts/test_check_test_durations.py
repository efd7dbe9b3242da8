"""scripts/check_test_durations.py: the CI check that keeps slow tests out of the default tier."""

from __future__ import annotations

import subprocess
import sys

from llm_launch.launcher import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "scripts" / "check_test_durations.py"

LOG = """\
============================= slowest durations ==============================
9.00s call     tests/a_test.py::test_slow_call
2.50s setup    tests/a_test.py::test_slow_call
4.00s call     tests/b_test.py::test_fine[x-1]
0.01s teardown tests/b_test.py::test_fine[x-1]
(120 durations < 0.005s hidden.  Use -vv to show these durations.)
======================= 3 passed in 15.51s =======================
"""


def run(tmp_path, text: str, *args: str) -> subprocess.CompletedProcess:
    log = tmp_path / "pytest.log"
    log.write_text(text)
    return subprocess.run([sys.executable, str(SCRIPT), str(log), *args], capture_output=True, text=True)


def test_a_test_over_the_limit_counting_all_its_phases_fails_the_check(tmp_path):
    done = run(tmp_path, LOG)
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        "check_test_durations: tests/a_test.py::test_slow_call took 11.5 s in the default tier (limit 10 s); "
        "make it faster or mark it @pytest.mark.system"]


def test_tests_within_the_limit_pass(tmp_path):
    assert run(tmp_path, LOG, "--limit", "12").returncode == 0


def test_a_log_without_durations_is_refused(tmp_path):
    done = run(tmp_path, "3 passed in 1.0s\n")
    assert done.returncode == 2 and "--durations=0" in done.stdout
