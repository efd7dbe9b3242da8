"""Counting what a stage drops or cannot read, with a few examples of each kind for the manifest."""

from __future__ import annotations

MAX_EXAMPLES = 5
DETAIL_CHARS = 160


class Tally:
    """Counts by kind (e.g. malformed_json, min_words), each with up to MAX_EXAMPLES examples."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.examples: dict[str, list[dict[str, str]]] = {}

    def add(self, kind: str, where: str, detail: str = "", count: int = 1) -> None:
        """Count `count` items of `kind`; `where` names the input (path, path:line, source id)."""
        self.counts[kind] = self.counts.get(kind, 0) + count
        examples = self.examples.setdefault(kind, [])
        if len(examples) < MAX_EXAMPLES:
            example = {"where": where}
            if detail:
                example["detail"] = detail[:DETAIL_CHARS]
            examples.append(example)

    def merge(self, other: Tally) -> None:
        """Add another tally's counts and examples (examples stay capped)."""
        for kind, count in other.counts.items():
            self.counts[kind] = self.counts.get(kind, 0) + count
            room = MAX_EXAMPLES - len(self.examples.setdefault(kind, []))
            self.examples[kind].extend(other.examples.get(kind, [])[:max(0, room)])

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict[str, dict]:
        """{kind: {"count": n, "examples": [...]}} sorted by kind, for the manifest."""
        return {kind: {"count": self.counts[kind], "examples": self.examples.get(kind, [])}
                for kind in sorted(self.counts)}

    @classmethod
    def from_dict(cls, data: dict[str, dict]) -> Tally:
        tally = cls()
        for kind, entry in data.items():
            tally.counts[kind] = entry["count"]
            tally.examples[kind] = list(entry["examples"])
        return tally
