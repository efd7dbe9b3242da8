"""A rank's StopRequest names what asked it to stop (issue 23: every stop line said SIGTERM, Ctrl-C included)."""

from __future__ import annotations

import signal

import pytest
from llm_launch.launcher.stop import STOP_FILE_ENV
from llm_launch.train.signals import StopRequest


@pytest.fixture
def handlers():
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


@pytest.mark.parametrize(("content", "reason"), [("2\n", "Ctrl-C (SIGINT)"), ("15\n", "SIGTERM"), ("", "a stop request")])
def test_the_stop_file_names_the_launchers_signal(tmp_path, monkeypatch, handlers, content, reason):
    stop_file = tmp_path / ".llm-launch.stop"
    monkeypatch.setenv(STOP_FILE_ENV, str(stop_file))
    request = StopRequest()
    assert not request.signalled
    stop_file.write_text(content)
    assert request.signalled and request.reason == reason


@pytest.mark.parametrize(("signum", "reason"), [(signal.SIGINT, "Ctrl-C (SIGINT)"), (signal.SIGTERM, "SIGTERM")])
def test_a_signal_names_itself(monkeypatch, handlers, signum, reason):
    monkeypatch.delenv(STOP_FILE_ENV, raising=False)
    request = StopRequest()
    assert request.reason == "a stop request"  # what a rank that only saw another rank's vote says
    signal.raise_signal(signum)
    assert request.signalled and request.reason == reason
