"""A 64-bit hash of every whitespace-separated word of a text, computed with numpy for the whole text at once.

The words are exactly text.split()'s: the separators are the characters str.isspace accepts. A word's hash is the
polynomial sum of (code point + 1) * K^i over its characters, mod 2^64 (K odd), finished with splitmix64's mixer
(https://prng.di.unimi.it/splitmix64.c). From prefix sums P of (c_j + 1) * K^j over the whole text, the word at
[s, e) is (P[e] - P[s]) * K^-s, so no Python-level step runs per word or per character. MinHash shingles are built
from these (blocks/dedup.py); two different words share a hash only by a 64-bit collision (polynomial hashes mod
2^64 have constructed collisions only between strings of thousands of characters: no whitespace in them).
"""

from __future__ import annotations

import numpy as np

_K = 0x100000001B3  # odd: invertible mod 2^64
_K_INVERSE = pow(_K, -1, 2**64)
_SPACES = [c for c in range(0x3001) if chr(c).isspace()]
"""Every code point str.isspace accepts (the largest is U+3000)."""
assert all(not chr(c).isspace() for c in (0x3001, 0x3002, 0xFEFF, 0x10FFFF))
_IS_SPACE = np.zeros(0x3002, bool)
_IS_SPACE[_SPACES] = True
_MAX_CODE = np.uint32(0x3001)
_TABLE = 1 << 16
"""Powers of K and K^-1 kept for texts up to this many characters (longer texts compute theirs)."""


def _powers(base: int, count: int) -> np.ndarray:
    powers = np.full(count, base, np.uint64)
    powers[0] = 1
    return np.cumprod(powers, dtype=np.uint64)  # wraps around mod 2^64


_POWERS = _powers(_K, _TABLE)
_INVERSE_POWERS = _powers(_K_INVERSE, _TABLE)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, in place: every output bit depends on every input bit."""
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def word_hashes(text: str) -> np.ndarray:
    """uint64 hash of each word of text.split(), in order."""
    codes = np.frombuffer(text.encode("utf-32-le"), np.uint32)
    if not len(codes):
        return np.empty(0, np.uint64)
    in_word = np.zeros(len(codes) + 2, bool)
    np.logical_not(_IS_SPACE[np.minimum(codes, _MAX_CODE)], out=in_word[1:-1])
    edges = np.flatnonzero(in_word[1:] != in_word[:-1])  # a word's start, then its end, and so on
    starts, ends = edges[0::2], edges[1::2]
    if len(codes) <= _TABLE:
        powers, inverse = _POWERS[:len(codes)], _INVERSE_POWERS
    else:
        powers, inverse = _powers(_K, len(codes)), _powers(_K_INVERSE, len(codes))
    prefix = np.zeros(len(codes) + 1, np.uint64)
    np.cumsum((codes.astype(np.uint64) + np.uint64(1)) * powers, out=prefix[1:])
    hashes = prefix[ends] - prefix[starts]
    hashes *= inverse[starts]
    return mix64(hashes)
