"""Quality filters. Each is a named predicate; a document is dropped by the first that rejects it
(in the order of FILTER_ORDER) and counted under that name in the manifest.

Metadata and URL filters look at the record's other fields (JSONL keys, Parquet columns); documents
without the URL field are kept, since nothing says they come from a blocked site.
"""

from __future__ import annotations

from collections import Counter
from urllib.parse import urlsplit

from llm_launch.launcher.config.schema import DataFilterConfig

FILTER_ORDER = ("metadata", "blocked_url", "min_words", "max_words", "mean_word_length", "alpha_word_fraction",
                "duplicate_lines", "duplicate_ngrams", "language")
LANGUAGE_SAMPLE_CHARS = 2000


def mean_word_length(words: list[str]) -> float:
    return sum(len(w) for w in words) / len(words) if words else 0.0


def alpha_word_fraction(words: list[str]) -> float:
    """Share of words with at least one alphabetic character."""
    return sum(any(c.isalpha() for c in w) for w in words) / len(words) if words else 0.0


def duplicate_line_fraction(text: str) -> float:
    """Share of non-empty lines that repeat an earlier line."""
    lines = [line for line in text.split("\n") if line.strip()]
    return (len(lines) - len(set(lines))) / len(lines) if lines else 0.0


def duplicate_ngram_fraction(words: list[str], n: int) -> float:
    """Share of the characters of all word n-gram occurrences that belong to n-grams seen more than once."""
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0
    counts = Counter(grams)
    total = repeated = 0
    for gram in grams:
        size = sum(len(w) for w in gram)
        total += size
        if counts[gram] > 1:
            repeated += size
    return repeated / total if total else 0.0


def url_is_blocked(url: object, blocked: list[str]) -> bool:
    """Whether url's host is a blocked domain or one of its subdomains."""
    if not isinstance(url, str) or not url:
        return False
    host = (urlsplit(url if "//" in url else f"//{url}").hostname or "").lower().rstrip(".")
    return any(host == d or host.endswith(f".{d}") for d in (b.lower().lstrip(".") for b in blocked))


def metadata_rejects(meta: dict, cfg: DataFilterConfig) -> bool:
    if any(str(meta.get(key)) != value for key, value in cfg.required_metadata.items()):
        return True
    return any(key in meta and str(meta[key]) == value for key, value in cfg.blocked_metadata.items())


class LanguageFilter:
    """langdetect, seeded so that detection is deterministic; imported only when languages are set."""

    def __init__(self, languages: list[str], min_score: float):
        from llm_launch.dataprep.extract import require

        langdetect = require("langdetect", "langdetect")
        langdetect.DetectorFactory.seed = 0
        self._detect = langdetect.detect_langs
        self._error = langdetect.LangDetectException
        self.languages, self.min_score = set(languages), min_score

    def keeps(self, text: str) -> bool:
        try:
            found = self._detect(text[:LANGUAGE_SAMPLE_CHARS])
        except self._error:
            return False
        return any(lang.lang in self.languages and lang.prob >= self.min_score for lang in found)


class QualityFilters:
    """All configured filters; reason(text, meta) names the first that drops the document, or None."""

    def __init__(self, cfg: DataFilterConfig):
        self.cfg = cfg
        self.language = LanguageFilter(cfg.languages, cfg.min_language_score) if cfg.languages else None

    def reason(self, text: str, meta: dict) -> str | None:
        cfg = self.cfg
        if (cfg.required_metadata or cfg.blocked_metadata) and metadata_rejects(meta, cfg):
            return "metadata"
        if cfg.url_field and cfg.blocked_domains and url_is_blocked(meta.get(cfg.url_field), cfg.blocked_domains):
            return "blocked_url"
        words = text.split()
        if len(words) < cfg.min_words:
            return "min_words"
        if cfg.max_words is not None and len(words) > cfg.max_words:
            return "max_words"
        if not cfg.min_mean_word_length <= mean_word_length(words) <= cfg.max_mean_word_length:
            return "mean_word_length"
        if cfg.min_alpha_word_fraction > 0 and alpha_word_fraction(words) < cfg.min_alpha_word_fraction:
            return "alpha_word_fraction"
        if cfg.max_duplicate_line_fraction < 1 and duplicate_line_fraction(text) > cfg.max_duplicate_line_fraction:
            return "duplicate_lines"
        if (cfg.max_duplicate_ngram_fraction < 1
                and duplicate_ngram_fraction(words, cfg.ngram_size) > cfg.max_duplicate_ngram_fraction):
            return "duplicate_ngrams"
        if self.language is not None and not self.language.keeps(text):
            return "language"
        return None
