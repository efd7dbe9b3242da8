"""Weighted mixing of sources, the seeded document order and the train/valid split.

Weights are shares of the mixed corpus measured in characters of kept text (known before
tokenizing, so only selected documents are tokenized; for one tokenizer characters track tokens
closely, and the manifest reports the resulting token counts per source). The source with the
least text for its weight is used whole; every other source contributes a seeded random subset of
its documents up to its share. Nothing is repeated. Every random choice comes from
numpy's PCG64 seeded with (seed, stage), so the same inputs and seed give the same order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_SELECT, _ORDER, _SPLIT = 1, 2, 3


@dataclass
class Doc:
    """A kept document on its way to the shards."""

    source: int
    """Index of its source."""
    text: str
    """Normalised, deduplicated text."""


def _rng(seed: int, *stage: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64([seed, *stage]))


def mix(docs_by_source: list[list[Doc]], weights: list[float], seed: int,
        shuffle: bool) -> tuple[list[Doc], list[dict]]:
    """The mixed document list and, per source, what was available and what was selected."""
    chars = [sum(len(d.text) for d in docs) for docs in docs_by_source]
    live = [i for i, c in enumerate(chars) if c > 0]
    total_weight = sum(weights[i] for i in live)
    scale = min((chars[i] / (weights[i] / total_weight) for i in live), default=0.0)
    selected: list[Doc] = []
    stats = []
    for i, docs in enumerate(docs_by_source):
        target = weights[i] / total_weight * scale if i in live else 0.0
        picked, taken = [], 0
        for index in _rng(seed, _SELECT, i).permutation(len(docs)):
            if taken >= target:
                break
            picked.append(int(index))
            taken += len(docs[index].text)
        picked.sort()  # reading order within a source; the shuffle below interleaves sources
        selected.extend(docs[j] for j in picked)
        stats.append({"documents_available": len(docs), "chars_available": chars[i],
                      "documents_selected": len(picked), "chars_selected": taken})
    total = sum(s["chars_selected"] for s in stats)
    for s in stats:
        s["share_selected"] = round(s["chars_selected"] / total, 6) if total else 0.0
    if shuffle:
        selected = [selected[int(j)] for j in _rng(seed, _ORDER).permutation(len(selected))]
    return selected, stats


def split(docs: list[Doc], valid_fraction: float, seed: int) -> tuple[list[Doc], list[Doc]]:
    """(train, valid): a seeded random valid_fraction of the documents (at least one when the fraction is
    positive and there are two or more), both keeping the mixed order."""
    count = round(len(docs) * valid_fraction)
    if valid_fraction > 0 and len(docs) >= 2:
        count = min(max(count, 1), len(docs) - 1)
    chosen = set(_rng(seed, _SPLIT).permutation(len(docs))[:count].tolist())
    train = [d for i, d in enumerate(docs) if i not in chosen]
    valid = [d for i, d in enumerate(docs) if i in chosen]
    return train, valid
