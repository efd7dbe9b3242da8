"""The quality filters as DataTrove filter steps, each drop counted under our filter's name.

DataTrove's own filters where one measures what ours does (https://github.com/huggingface/datatrove,
src/datatrove/pipeline/filters/):
    GopherQualityFilter     min_words, max_words, mean_word_length, alpha_word_fraction
    GopherRepetitionFilter  duplicate_lines, duplicate_ngrams
Ours, where DataTrove has no equivalent we can use here:
    metadata      required/blocked record field values (DataTrove has only the generic LambdaFilter)
    blocked_url   DataTrove's URLFilter always adds its built-in block lists (use_integrated_lists), needs
                  tldextract, fasteners and pyahocorasick, and tldextract fetches the public suffix list over the
                  network on first use; ours matches a domain and its subdomains only
    language      DataTrove's LanguageFilter downloads a fastText model from the Hugging Face Hub at run time;
                  ours is langdetect (seeded), which ships its profiles
Words are whitespace-separated tokens (WhitespaceWords), as in dataprep/filters.py, instead of DataTrove's
default spaCy/NLTK word tokenizers (which need those packages and their models).

The two Gopher filters are DataTrove's classes (their definitions, thresholds and drop reasons) with `filter`
computed with fewer Python-level steps per word for the options we set: a symbol-only word is one that
str.strip of the punctuation leaves empty, duplicate lines are lines minus distinct lines, and the repeated
n-gram walk runs only when some n-gram repeats. tests/dataprep/test_filters_gopher.py checks that they decide as
DataTrove's own `filter` does, reason included.
"""

from __future__ import annotations

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.filters.base_filter import BaseFilter, get_filter_result
from datatrove.pipeline.filters.gopher_quality_filter import GopherQualityFilter
from datatrove.pipeline.filters.gopher_repetition_filter import GopherRepetitionFilter
from datatrove.utils.text import PUNCTUATION_SET, split_into_words
from datatrove.utils.word_tokenizers import WordTokenizer
from llm_launch.dataprep.blocks.reports import TaskReport
from llm_launch.dataprep.filters import LanguageFilter, metadata_rejects, url_is_blocked
from llm_launch.launcher.config.schema import DataFilterConfig

FILTER_STEP = "filter"
GOPHER_REASONS = {"gopher_short_doc": "min_words", "gopher_long_doc": "max_words",
                  "gopher_below_avg_threshold": "mean_word_length", "gopher_above_avg_threshold": "mean_word_length",
                  "gopher_below_alpha_threshold": "alpha_word_fraction", "dup_line_frac": "duplicate_lines",
                  "empty": "duplicate_lines"}
"""DataTrove's drop reasons -> our filter names (duplicated_<n>_n_grams -> duplicate_ngrams, below)."""


class WhitespaceWords(WordTokenizer):
    """Words are whitespace-separated tokens; sentences are lines."""

    def __init__(self):
        super().__init__("whitespace")

    def word_tokenize(self, text: str) -> list[str]:
        return text.split()

    def sent_tokenize(self, text: str) -> list[str]:
        return [line for line in text.split("\n") if line.strip()]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        spans, start = [], 0
        for line in text.split("\n"):
            spans.append((start, start + len(line)))
            start += len(line) + 1
        return spans


PUNCTUATION_CHARS = "".join(sorted(PUNCTUATION_SET))
"""DataTrove's punctuation, as the argument of str.strip."""


class GopherQuality(GopherQualityFilter):
    """DataTrove's GopherQualityFilter for word counts, mean word length and the alphabetic-word share (the checks
    filter_steps turns on; the others must be off)."""

    def __init__(self, **options):
        super().__init__(**options)
        off = ("max_symbol_word_ratio", "max_bullet_lines_ratio", "max_ellipsis_lines_ratio", "min_stop_words")
        assert all(getattr(self, name) is None for name in off), "GopherQuality computes only the checks we set"

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        words = split_into_words(doc.text, self.language)
        kept = [w for w in words if w.strip(PUNCTUATION_CHARS)]
        if self.min_doc_words and len(kept) < self.min_doc_words:
            return False, "gopher_short_doc"
        if self.max_doc_words and len(kept) > self.max_doc_words:
            return False, "gopher_long_doc"
        mean = sum(map(len, kept)) / len(kept) if kept else float("nan")  # numpy's mean of no words is nan
        if self.min_avg_word_length and mean < self.min_avg_word_length:
            return False, "gopher_below_avg_threshold"
        if self.max_avg_word_length and mean > self.max_avg_word_length:
            return False, "gopher_above_avg_threshold"
        if self.max_non_alpha_words_ratio:
            alpha = sum(1 for w in words if w.isalpha() or any(c.isalpha() for c in w))
            if alpha / len(words) < self.max_non_alpha_words_ratio:
                return False, "gopher_below_alpha_threshold"
        return True


class GopherRepetition(GopherRepetitionFilter):
    """DataTrove's GopherRepetitionFilter for the duplicate-line share and the duplicate word n-gram shares (the
    checks filter_steps turns on; the others must be off)."""

    def __init__(self, **options):
        super().__init__(**options)
        off = ("dup_para_frac", "dup_para_char_frac", "dup_line_char_frac")
        assert all(getattr(self, name) is None for name in off) and not self.top_n_grams, \
            "GopherRepetition computes only the checks we set"

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        text = doc.text
        if not text:
            return False, "empty"
        if self.dup_line_frac:
            lines = self._line_splitter.split(text)
            if (len(lines) - len(set(lines))) / len(lines) > self.dup_line_frac:
                return False, "dup_line_frac"
        words = split_into_words(text, self.language)
        for n, n_frac in self.dup_n_grams:
            if repeated_ngram_chars(words, n) / len(text) > n_frac:
                return False, f"duplicated_{n}_n_grams"
        return True


def repeated_ngram_chars(words: list[str], n: int) -> int:
    """Characters of the n-grams (words joined without a separator) that repeat an earlier n-gram, walking left
    to right and stepping past a repeat: Gopher's duplicate n-gram measure as DataTrove computes it."""
    grams = list(map("".join, zip(*(words[i:] for i in range(n)), strict=False)))
    if len(set(grams)) == len(grams):
        return 0
    seen: set[str] = set()
    repeated, index = 0, 0
    while index < len(grams):
        gram = grams[index]
        if gram in seen:
            repeated += len(gram)
            index += n
        else:
            seen.add(gram)
            index += 1
    return repeated


def our_name(reason: str | None) -> str:
    if reason and reason.startswith("duplicated_") and reason.endswith("_n_grams"):
        return "duplicate_ngrams"
    return GOPHER_REASONS.get(reason or "", reason or "filtered")


class MetadataFilter(BaseFilter):
    """Ours: required and blocked record field values."""

    name = "metadata"

    def __init__(self, cfg: DataFilterConfig):
        super().__init__()
        self.cfg = cfg

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        return not metadata_rejects(doc.metadata.get("meta", {}), self.cfg) or (False, "metadata")


class BlockedUrlFilter(BaseFilter):
    """Ours: the record's URL field names a blocked domain or one of its subdomains."""

    name = "blocked_url"

    def __init__(self, cfg: DataFilterConfig):
        super().__init__()
        self.field, self.blocked = cfg.url_field, cfg.blocked_domains

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        return not url_is_blocked(doc.metadata.get("meta", {}).get(self.field), self.blocked) or (False, "blocked_url")


class LangdetectFilter(BaseFilter):
    """Ours: langdetect, seeded (dataprep/filters.py LanguageFilter), built in the worker on first use."""

    name = "language"

    def __init__(self, cfg: DataFilterConfig):
        super().__init__()
        self.languages, self.min_score = list(cfg.languages), cfg.min_language_score
        self._detector = None

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        if self._detector is None:
            self._detector = LanguageFilter(self.languages, self.min_score)
        return self._detector.keeps(doc.text) or (False, "language")


class Counted(BaseFilter):
    """Runs a filter and counts each drop under our filter name, per source, with examples (reports.py)."""

    def __init__(self, inner: BaseFilter, work: str):
        self.name = inner.name  # before PipelineStep.__init__, which labels the step's statistics with it
        super().__init__()
        self.inner, self.work = inner, work
        self.report = TaskReport()

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        keep, reason = get_filter_result(self.inner.filter(doc))
        if keep:
            return True
        name = our_name(reason)
        self.report.drop(doc.metadata["source"], "filtered", name, doc.id)
        return False, name

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        self.report = TaskReport()
        yield from super().run(data, rank, world_size)
        self.report.save(self.work, f"{FILTER_STEP}/{self.inner.name}", rank)


def filter_steps(cfg: DataFilterConfig, work: str) -> list[Counted]:
    """The active filters in the order dataprep/filters.py applies them."""
    words = WhitespaceWords()
    steps: list[BaseFilter] = []
    if cfg.required_metadata or cfg.blocked_metadata:
        steps.append(MetadataFilter(cfg))
    if cfg.url_field and cfg.blocked_domains:
        steps.append(BlockedUrlFilter(cfg))
    quality = GopherQuality(
        min_doc_words=cfg.min_words or None, max_doc_words=cfg.max_words,
        min_avg_word_length=cfg.min_mean_word_length or None, max_avg_word_length=cfg.max_mean_word_length,
        max_symbol_word_ratio=None, max_bullet_lines_ratio=None, max_ellipsis_lines_ratio=None,
        max_non_alpha_words_ratio=cfg.min_alpha_word_fraction or None, min_stop_words=None, language=words)
    quality.name = "gopher_quality"
    steps.append(quality)
    if cfg.max_duplicate_line_fraction < 1 or cfg.max_duplicate_ngram_fraction < 1:
        repetition = GopherRepetition(
            dup_line_frac=cfg.max_duplicate_line_fraction if cfg.max_duplicate_line_fraction < 1 else None,
            dup_para_frac=None, dup_line_char_frac=None, dup_para_char_frac=None, top_n_grams=(),
            dup_n_grams=((cfg.ngram_size, cfg.max_duplicate_ngram_fraction),)
            if cfg.max_duplicate_ngram_fraction < 1 else (), language=words)
        repetition.name = "gopher_repetition"
        steps.append(repetition)
    if cfg.languages:
        steps.append(LangdetectFilter(cfg))
    return [Counted(step, work) for step in steps]
