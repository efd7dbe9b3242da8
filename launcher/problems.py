"""Problems found in a job before it runs, and how they are reported."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import NoReturn

USAGE_EXIT_CODE = 2


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a job: the config field at fault and what would fix it."""

    field: str
    """Full key path of the field, e.g. parallelism.tp (or an override as typed)."""
    message: str
    """What is wrong and what would fix it, in one line."""

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


@dataclass
class Findings:
    """Problems (the job must not run) and warnings (it may, but the user should know)."""

    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def error(self, key: str, message: str) -> None:
        self.problems.append(Problem(key, message))

    def warn(self, key: str, message: str) -> None:
        self.warnings.append(f"{key}: {message}")


class JobProblems(Exception):
    """Raised with every problem found, so that they are reported together."""

    def __init__(self, problems: list[Problem]):
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def exit_with_problems(problems: list[Problem], stream=None) -> NoReturn:
    """Print one line per problem to stderr and exit with the usage error code."""
    stream = stream or sys.stderr
    noun = "problem" if len(problems) == 1 else "problems"
    print(f"llm-launch: {len(problems)} {noun} found before anything ran:", file=stream)
    for problem in problems:
        print(f"  error: {problem}", file=stream)
    sys.exit(USAGE_EXIT_CODE)
