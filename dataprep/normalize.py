"""Text normalisation applied to every document before filtering and deduplication."""

from __future__ import annotations

import re
import unicodedata

# C0/C1 control characters except tab and newline, DEL, and invisible marks that are never content
# (byte-order mark, zero-width space). Joiners (U+200C, U+200D) are kept: scripts and emoji need them.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufeff\u200b]")
_LINE_BREAKS = re.compile("\r\n|[\r\u2028\u2029\x85]")
_SPACES = re.compile(r"[^\S\n]+")  # any whitespace but newline (tabs, no-break and other Unicode spaces)
_BLANK_RUNS = re.compile(r"\n{3,}")


def normalize_text(text: str) -> str:
    """NFC, one newline convention, no control characters, single spaces, at most one blank line in a row."""
    text = unicodedata.normalize("NFC", text)
    text = _LINE_BREAKS.sub("\n", text)
    text = _CONTROL.sub("", text)
    text = "\n".join(_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANK_RUNS.sub("\n\n", text).strip()


def paragraphs(text: str) -> list[str]:
    """Paragraphs of normalised text: the blocks between blank lines."""
    return [p for p in text.split("\n\n") if p]
