"""Normalisation: NFC, control characters, whitespace."""

import unicodedata

from llm_launch.dataprep.normalize import normalize_text, paragraphs


def test_nfc_composes_characters():
    decomposed = "Cafe\u0301 cre\u0300me"
    assert normalize_text(decomposed) == unicodedata.normalize("NFC", decomposed) == "Café crème"


def test_control_characters_and_invisible_marks_go_newlines_and_joiners_stay():
    text = "\ufeffa\x00b\x07c\u200bd\r\ne\rf\u2028g\u200dh"
    assert normalize_text(text) == "abcd\ne\nf\ng\u200dh"


def test_whitespace_is_collapsed_within_lines_and_blank_runs_to_one_blank_line():
    text = "  one \t\u00a0 two  \n\n\n\n   three   \n \n\nfour\n\n  "
    assert normalize_text(text) == "one two\n\nthree\n\nfour"
    assert paragraphs(normalize_text(text)) == ["one two", "three", "four"]
