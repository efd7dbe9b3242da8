"""Range checks that a config section runs on its own fields, and the walk that runs them all.

A section (a schema dataclass deriving from Section) lists what is wrong with its own values in
`own_problems`; `problems` adds those of every nested section, each named by its full key path.
Choices are Enums, so OmegaConf already refused values outside them at composition. Checks that
need two sections (tp against the model's heads, the batch against the node count) live in
llm_launch.launcher.validate.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass

from llm_launch.launcher.problems import Problem


class Checks:
    """Collects the problems of one section, each under `<section key>.<field>`."""

    def __init__(self, at: str):
        self.at = at
        self.found: list[Problem] = []

    def key(self, name: str) -> str:
        """Full key path of a field of this section."""
        return f"{self.at}.{name}" if self.at else name

    def error(self, name: str, message: str) -> None:
        """Record one problem with field `name`."""
        self.found.append(Problem(self.key(name), message))

    def at_least(self, low: int, **values: int | None) -> None:
        """Every given value that is set must be >= low."""
        for name, value in values.items():
            if value is not None and value < low:
                word = "0 or more" if low == 0 else f"at least {low}"
                self.error(name, f"must be {word}, got {value}")

    def positive(self, **values: float | None) -> None:
        """Every given value that is set must be > 0."""
        for name, value in values.items():
            if value is not None and not value > 0:
                self.error(name, f"must be positive, got {value}")

    def fraction(self, *, open_low: bool = False, open_high: bool = False, **values: float) -> None:
        """Every given value must lie in [0, 1], with the named ends open."""
        low, high = "(" if open_low else "[", ")" if open_high else "]"
        for name, value in values.items():
            above = value > 0 if open_low else value >= 0
            below = value < 1 if open_high else value <= 1
            if not (above and below):
                self.error(name, f"must be in {low}0, 1{high}, got {value}")


class Section:
    """A config section that checks its own fields (mixed into the schema dataclasses)."""

    def own_problems(self, checks: Checks) -> None:
        """Add what is wrong with this section's own fields to checks (nothing by default)."""

    def problems(self, at: str = "") -> list[Problem]:
        """This section's problems and those of every section nested in it, with full key paths."""
        checks = Checks(at)
        self.own_problems(checks)
        found = checks.found
        for f in fields(self) if is_dataclass(self) else ():
            value, key = getattr(self, f.name), checks.key(f.name)
            items = enumerate(value) if isinstance(value, list) else [(None, value)]
            for index, item in items:
                if isinstance(item, Section):
                    found += item.problems(key if index is None else f"{key}[{index}]")
        return found
