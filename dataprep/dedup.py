"""Exact and near-duplicate removal.

Units are whole documents or paragraphs (blocks between blank lines), per dedup.granularity.
Exact: SHA-256 of the normalised unit. Near: MinHash of the unit's lower-cased word shingles,
indexed in a MinHash LSH (datasketch); a unit is a near duplicate when an earlier kept unit is an
LSH candidate whose estimated Jaccard similarity reaches dedup.threshold (the estimate is checked,
so LSH false positives are not dropped). Units are seen in reading order, so the first of each
cluster is kept and the result does not depend on how many workers computed the hashes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from llm_launch.launcher.config.schema import DedupConfig
from llm_launch.launcher.jsonl import Tally

MINHASH_SEED = 1
LSH_WEIGHTS = (0.1, 0.9)
"""(false positive, false negative) weights datasketch uses to pick bands and rows. Candidates are checked
against the threshold with the MinHash estimate, so a false positive costs one comparison while a false
negative keeps a duplicate: with 128 permutations and threshold 0.8 this gives 14 bands of 9 rows, which
finds a pair of similarity 0.89 with probability 0.998 (datasketch's even weights: 0.89)."""


def digest(text: str) -> bytes:
    """Content hash of a unit for exact deduplication."""
    return hashlib.sha256(text.encode("utf-8")).digest()[:16]


def shingles(text: str, size: int) -> list[bytes]:
    """Lower-cased word shingles of a unit; a unit shorter than size words is one shingle."""
    words = text.lower().split()
    if len(words) <= size:
        return [" ".join(words).encode("utf-8")]
    return sorted({" ".join(words[i:i + size]).encode("utf-8") for i in range(len(words) - size + 1)})


class MinHasher:
    """MinHash signatures with one set of permutations (built once per worker process)."""

    def __init__(self, num_perm: int, shingle_size: int):
        from datasketch import MinHash

        self._minhash = MinHash
        self._template = MinHash(num_perm=num_perm, seed=MINHASH_SEED)
        self.num_perm, self.shingle_size = num_perm, shingle_size

    def signature(self, text: str) -> np.ndarray:
        template = self._template
        minhash = self._minhash(num_perm=self.num_perm, seed=MINHASH_SEED, permutations=template.permutations,
                                scheme=template.scheme)
        minhash.update_batch(shingles(text, self.shingle_size))
        return minhash.hashvalues


@dataclass
class Unit:
    """What deduplication needs of one document or paragraph."""

    text: str
    """The unit's normalised text."""
    digest: bytes
    """Exact-content hash."""
    signature: np.ndarray | None
    """MinHash values, or None when near-duplicate removal is off."""


class Deduplicator:
    """Keeps the first unit of each exact or near-duplicate cluster, counting the rest."""

    def __init__(self, cfg: DedupConfig):
        self.cfg = cfg
        self.seen: dict[bytes, str] = {}
        self.tally = Tally()
        self._lsh = None
        self._keys: dict[str, tuple[object, str]] = {}
        if cfg.near:
            from datasketch import LeanMinHash, MinHash, MinHashLSH

            self._lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm, weights=LSH_WEIGHTS)
            self._lean = LeanMinHash
            self._scheme = MinHash(num_perm=cfg.num_perm, seed=MINHASH_SEED).scheme

    def _duplicate(self, unit: Unit, where: str) -> tuple[str, str] | None:
        """(kind, where the kept twin is) if the unit duplicates an earlier one, else None; records it if new."""
        if self.cfg.exact:
            twin = self.seen.get(unit.digest)
            if twin is not None:
                return "exact", twin
        if self._lsh is not None and unit.signature is not None:
            minhash = self._lean(seed=MINHASH_SEED, hashvalues=unit.signature, scheme=self._scheme)
            for key in sorted(self._lsh.query(minhash)):
                other, other_where = self._keys[key]
                if minhash.jaccard(other) >= self.cfg.threshold:
                    return "near", other_where
            key = str(len(self._keys))
            self._lsh.insert(key, minhash)
            self._keys[key] = (minhash, where)
        if self.cfg.exact:
            self.seen[unit.digest] = where
        return None

    def keep(self, units: list[Unit], where: str) -> str | None:
        """The document's text with duplicate units removed, or None when nothing of it is left."""
        unit_name = "documents" if self.cfg.granularity == "document" else "paragraphs"
        kept = []
        for number, unit in enumerate(units):
            here = where if unit_name == "documents" else f"{where} (paragraph {number + 1})"
            found = self._duplicate(unit, here)
            if found is None:
                kept.append(unit.text)
            else:
                kind, twin = found
                self.tally.add(f"{kind}_duplicate_{unit_name}", here, f"duplicate of {twin}")
        if not kept:
            if unit_name == "paragraphs":
                self.tally.add("documents_emptied_by_paragraph_dedup", where)
            return None
        return "\n\n".join(kept)
