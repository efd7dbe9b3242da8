"""JSON Lines read line by line, with what cannot be read counted in a Tally instead of stopping the reader.

Shared by data preparation (llm_launch.dataprep: a Tally per stage, kept in the manifest) and the training
data packers (llm_launch.train.data.sft and dpo: bad records counted and named in the packed set's metadata).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from llm_launch.launcher.json_errors import json_error_text

MAX_EXAMPLES = 5
DETAIL_CHARS = 160


class Tally:
    """What a stage drops or cannot read, counted by kind (e.g. malformed_json, min_words), each with up to
    MAX_EXAMPLES examples for the manifest."""

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


def iter_jsonl(path: Path, tally: Tally) -> Iterator[tuple[str, object]]:
    """(path:line, parsed value) of each non-blank line; undecodable and malformed lines are counted."""
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, 1):
            where = f"{path}:{number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                tally.add("undecodable_bytes", where, str(exc))
                continue
            if not line.strip():
                continue
            try:
                yield where, json.loads(line)
            except json.JSONDecodeError as exc:
                tally.add("malformed_json", where, json_error_text(exc))
