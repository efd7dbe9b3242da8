"""One run per folder: a held lock refuses a second run, is free once its holder ends, and a dead holder is noticed.

flock(2) locks belong to an open file description, so two RunLocks in this one process conflict just as two
processes do; a holder that dies is played by closing its descriptor without release() (what the kernel does).
"""

import os

import pytest
from llm_launch.launcher.run_lock import FolderInUse, RunLock, in_use


def test_a_held_folder_refuses_a_second_run_naming_the_holder(tmp_path):
    first = RunLock(tmp_path, "output_dir").acquire()
    with pytest.raises(FolderInUse, match=rf"{tmp_path} is in use by a running job \(pid {os.getpid()} on .*\); "
                                          r"wait for it to finish or stop it, or set output_dir to another folder"):
        RunLock(tmp_path, "output_dir").acquire()
    assert in_use(tmp_path, "output_dir").startswith(f"{tmp_path} is in use by a running job")
    first.release()
    assert in_use(tmp_path, "output_dir") is None
    second = RunLock(tmp_path, "output_dir").acquire()
    assert second.stale_note() is None  # released properly: nothing to report
    second.release()


def test_a_holder_that_died_is_taken_over_and_said_so(tmp_path):
    dead = RunLock(tmp_path, "output_dir").acquire()
    os.close(dead.fd)  # the process ended without releasing: the kernel drops the flock, the record stays
    assert in_use(tmp_path, "output_dir") is None
    heir = RunLock(tmp_path, "output_dir").acquire()
    assert heir.stale_note() == (f"{tmp_path}: the run that held it (pid {os.getpid()} on {os.uname().nodename}) "
                                 "ended without releasing it; taken over")
    heir.release()
