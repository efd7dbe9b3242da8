"""Long documents are tokenized in bounded pieces with the same token ids as encoding the whole document at once.

A fast tokenizer handed a 50-million-character document in one call holds every token's string, offsets and
alignment at once (gigabytes). Here a document longer than PIECE_CHARS is cut into pieces of about that size,
each cut placed where the tokenizer does not look across: just before a whitespace character that follows a
non-whitespace one (pre-tokenizers split words there: GPT-2/Llama 3 byte-level regex, Metaspace), and then
verified: the text VERIFY_CHARS either side of the cut must encode to the same ids in two pieces as in one.
A candidate that fails is passed over for the one before it. A document where no cut verifies (no whitespace
for a long stretch, or a tokenizer that changes every piece, e.g. a normalizer that prepends a character to
each input) is encoded whole, as before, and said so in one line.

The pieces are yielded as Continued(ids) (more of the same document follows) and, for the last, a plain list;
the packer (llm_launch.train.data.packed.RowPacker) adds EOS only after the last piece.
"""

from __future__ import annotations

import ctypes
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tokenizers import Tokenizer

PIECE_CHARS = 1 << 20
"""Characters per tokenizer call for a long document (about 1 M: tens of MB of tokenizer state at most)."""
VERIFY_CHARS = 2048
"""Context either side of a cut that must encode the same in two pieces as in one."""
SEARCH_CHARS = 1 << 16
"""How far back from a piece's end a cut is looked for."""
MAX_TRIES = 16
"""Candidate cuts verified per piece before the piece is extended."""
CUT_BEFORE = re.compile(r"(?<=\S)(?=\s)")
"""A position just before a whitespace character that follows a non-whitespace one."""


def _malloc_trim() -> Callable[[], None]:
    """glibc's malloc_trim(0), where there is one: the tokenizer's per-piece allocations, freed, go back to the
    system instead of piling up as heap the process keeps (https://man7.org/linux/man-pages/man3/malloc_trim.3.html)."""
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return lambda: None
    return lambda: trim(0)


give_back_freed_memory = _malloc_trim()


class Continued(list):
    """Token ids of a piece of a document that continues in the next item (no EOS after it)."""


def _ids(tokenizer: Tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False).ids


def _cut_verifies(tokenizer: Tokenizer, text: str, cut: int, start: int) -> bool:
    left = text[max(start, cut - VERIFY_CHARS):cut]
    right = text[cut:cut + VERIFY_CHARS]
    return _ids(tokenizer, left) + _ids(tokenizer, right) == _ids(tokenizer, left + right)


def find_cut(tokenizer: Tokenizer, text: str, start: int, end: int) -> int | None:
    """A verified cut in text[start:end], as late as possible (the piece's end), or None."""
    low = max(start + 1, end - SEARCH_CHARS)
    candidates = [m.start() for m in CUT_BEFORE.finditer(text, low, end)]
    for cut in reversed(candidates[-MAX_TRIES:]):
        if _cut_verifies(tokenizer, text, cut, start):
            return cut
    return None


def encode_long(tokenizer: Tokenizer, text: str, *, piece_chars: int = PIECE_CHARS,
                on_piece: Callable[[int, int], None] | None = None) -> Iterator[list[int]]:
    """Token ids of one document, piece by piece: Continued(ids) for every piece but the last.

    on_piece(characters encoded so far, ids of the piece) is called after each piece (progress).
    """
    start = 0
    while start < len(text):
        end = start + piece_chars
        cut = find_cut(tokenizer, text, start, end) if end < len(text) else len(text)
        while cut is None:  # no verified cut near the end of this piece: look further on
            end += piece_chars
            if end >= len(text):
                cut = len(text)
                if start == 0:
                    print(f"tokenizing a {len(text):,}-character document whole: no cut verified to keep the "
                          "tokenizer's ids (no whitespace, or a tokenizer that changes each piece)", flush=True)
            else:
                cut = find_cut(tokenizer, text, start, end)
        ids = _ids(tokenizer, text[start:cut])
        give_back_freed_memory()
        if on_piece is not None:
            on_piece(cut, len(ids))
        yield ids if cut == len(text) else Continued(ids)
        start = cut
