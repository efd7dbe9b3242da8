"""Fail when a default-tier test took longer than the limit: reads pytest's --durations report.

Usage: python scripts/check_test_durations.py PYTEST_LOG [--limit SECONDS]

pytest prints one line per phase (setup, call, teardown) in its "slowest durations" section, e.g.
`12.34s call     tests/train/test_resume.py::test_x`. A test's time is the sum of its phases; a test over
the limit belongs in the system tier (@pytest.mark.system, python -m pytest -m system).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from pathlib import Path

LINE = re.compile(r"^(\d+(?:\.\d+)?)s (setup|call|teardown)\s+(\S.*)$")


def test_seconds(log: str) -> dict[str, float]:
    """Seconds per test id, summed over its phases, from pytest's durations section."""
    seconds: dict[str, float] = defaultdict(float)
    for line in log.splitlines():
        match = LINE.match(line.strip())
        if match:
            seconds[match.group(3)] += float(match.group(1))
    return dict(seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", type=Path, help="pytest output run with --durations=0")
    parser.add_argument("--limit", type=float, default=10.0, help="seconds a default-tier test may take")
    args = parser.parse_args(argv)
    text = args.log.read_text(encoding="utf-8", errors="replace")
    if "slowest" not in text:
        print(f"check_test_durations: {args.log} has no durations section; run pytest with --durations=0")
        return 2
    slow = sorted(((s, t) for t, s in test_seconds(text).items() if s > args.limit), reverse=True)
    for seconds, test in slow:
        print(f"check_test_durations: {test} took {seconds:.1f} s in the default tier (limit {args.limit:g} s); "
              "make it faster or mark it @pytest.mark.system")
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())
