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
"""

from __future__ import annotations

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.filters.base_filter import BaseFilter, get_filter_result
from datatrove.pipeline.filters.gopher_quality_filter import GopherQualityFilter
from datatrove.pipeline.filters.gopher_repetition_filter import GopherRepetitionFilter
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
        super().__init__()
        self.inner, self.work = inner, work
        self.name = f"{inner.name}"
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
    quality = GopherQualityFilter(
        min_doc_words=cfg.min_words or None, max_doc_words=cfg.max_words,
        min_avg_word_length=cfg.min_mean_word_length or None, max_avg_word_length=cfg.max_mean_word_length,
        max_symbol_word_ratio=None, max_bullet_lines_ratio=None, max_ellipsis_lines_ratio=None,
        max_non_alpha_words_ratio=cfg.min_alpha_word_fraction or None, min_stop_words=None, language=words)
    quality.name = "gopher_quality"
    steps.append(quality)
    if cfg.max_duplicate_line_fraction < 1 or cfg.max_duplicate_ngram_fraction < 1:
        repetition = GopherRepetitionFilter(
            dup_line_frac=cfg.max_duplicate_line_fraction if cfg.max_duplicate_line_fraction < 1 else None,
            dup_para_frac=None, dup_line_char_frac=None, dup_para_char_frac=None, top_n_grams=(),
            dup_n_grams=((cfg.ngram_size, cfg.max_duplicate_ngram_fraction),)
            if cfg.max_duplicate_ngram_fraction < 1 else (), language=words)
        repetition.name = "gopher_repetition"
        steps.append(repetition)
    if cfg.languages:
        steps.append(LangdetectFilter(cfg))
    return [Counted(step, work) for step in steps]
