"""Each quality filter drops what it should, keeps what it should, under its own name."""

import pytest
from llm_launch.dataprep.filters import (
    FILTER_ORDER,
    QualityFilters,
    duplicate_line_fraction,
    duplicate_ngram_fraction,
    url_is_blocked,
)
from llm_launch.launcher.config.schema import DataFilterConfig
from pipeline_helpers import chapters

GOOD = chapters(1)[0]


def reason(text: str, meta: dict | None = None, **settings) -> str | None:
    return QualityFilters(DataFilterConfig(**settings)).reason(text, meta or {})


def test_real_prose_passes_the_defaults_apart_from_repetition_filters():
    assert reason(GOOD, max_duplicate_ngram_fraction=1.0) is None


@pytest.mark.parametrize(("text", "settings", "expected"), [
    ("too short", {"min_words": 5}, "min_words"),
    ("one two three four five", {"min_words": 5}, None),
    (" ".join(["word"] * 50), {"max_words": 49, "max_duplicate_ngram_fraction": 1.0,
                               "max_duplicate_line_fraction": 1.0}, "max_words"),
    ("a b c d e f g h", {"min_mean_word_length": 2.0}, "mean_word_length"),
    ("x" * 30 + " " + "y" * 30 + " " + "z" * 30 + " q" * 3, {"max_mean_word_length": 12}, "mean_word_length"),
    ("12 34 56 78 90 11 22 33 44 words", {"min_alpha_word_fraction": 0.5}, "alpha_word_fraction"),
    ("12 34 56 78 90 11 22 33 44 words", {"min_alpha_word_fraction": 0}, None),
])
def test_length_and_word_filters(text, settings, expected):
    assert reason(text, **settings) == expected


def test_repeated_lines_are_measured_and_dropped():
    text = "\n".join(["buy cheap watches now"] * 6 + ["a genuinely different line of text", "and one more"])
    assert duplicate_line_fraction(text) == pytest.approx(5 / 8)
    assert reason(text, max_duplicate_line_fraction=0.5, max_duplicate_ngram_fraction=1.0) == "duplicate_lines"
    assert reason(text, max_duplicate_line_fraction=0.7, max_duplicate_ngram_fraction=1.0) is None


def test_repeated_ngrams_are_measured_and_dropped():
    words = "click here to subscribe".split() * 10 + "then something else entirely happens here".split()
    assert duplicate_ngram_fraction(words, 3) > 0.8
    assert duplicate_ngram_fraction("every word here is new to this text".split(), 3) == 0.0
    text = " ".join(words)
    assert reason(text, ngram_size=3, max_duplicate_ngram_fraction=0.5) == "duplicate_ngrams"
    assert reason(text, ngram_size=3, max_duplicate_ngram_fraction=1.0) is None


def test_language_filter_keeps_the_wanted_language():
    german = ("Am Anfang schuf Gott Himmel und Erde. Und die Erde war wüst und leer, und es war finster auf der "
              "Tiefe; und der Geist Gottes schwebte auf dem Wasser.")
    assert reason(GOOD, languages=["en"], max_duplicate_ngram_fraction=1.0) is None
    assert reason(german, languages=["en"]) == "language"
    assert reason(german, languages=["de", "en"]) is None


def test_url_filter_blocks_domains_and_subdomains_only():
    assert url_is_blocked("https://spam.example.com/page", ["example.com"])
    assert url_is_blocked("example.com/x", ["example.com"])
    assert not url_is_blocked("https://notexample.com/", ["example.com"])
    assert not url_is_blocked(None, ["example.com"])
    settings = {"url_field": "url", "blocked_domains": ["example.com"], "max_duplicate_ngram_fraction": 1.0}
    assert reason(GOOD, {"url": "http://www.example.com/a"}, **settings) == "blocked_url"
    assert reason(GOOD, {"url": "http://good.org/a"}, **settings) is None
    assert reason(GOOD, {}, **settings) is None


def test_metadata_filters_require_and_block_values():
    settings = {"required_metadata": {"license": "cc-by"}, "blocked_metadata": {"split": "test"},
                "max_duplicate_ngram_fraction": 1.0}
    assert reason(GOOD, {"license": "cc-by"}, **settings) is None
    assert reason(GOOD, {"license": "proprietary"}, **settings) == "metadata"
    assert reason(GOOD, {}, **settings) == "metadata"
    assert reason(GOOD, {"license": "cc-by", "split": "test"}, **settings) == "metadata"


def test_every_reason_is_a_documented_filter_name():
    assert {"min_words", "duplicate_ngrams", "language", "metadata", "blocked_url"} <= set(FILTER_ORDER)
