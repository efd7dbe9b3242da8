"""Our Gopher filters (dataprep/blocks/filters.py) decide every document as DataTrove's own classes do, reason
included, for every setting filter_steps can give them."""

import pytest
from datatrove.data import Document
from datatrove.pipeline.filters.gopher_quality_filter import GopherQualityFilter
from datatrove.pipeline.filters.gopher_repetition_filter import GopherRepetitionFilter
from llm_launch.dataprep.blocks.filters import GopherQuality, GopherRepetition, WhitespaceWords, filter_steps
from llm_launch.launcher.config.schema import DataFilterConfig
from pipeline_helpers import edge_texts

pytestmark = pytest.mark.filterwarnings("ignore:Mean of empty slice", "ignore:invalid value encountered")

def outcome(step, text: str):
    try:
        return step.filter(Document(text=text, id="0"))
    except ZeroDivisionError:
        return "ZeroDivisionError"


QUALITY_SETTINGS = [
    {"min_doc_words": 50, "max_doc_words": 100_000, "min_avg_word_length": 3, "max_avg_word_length": 10,
     "max_non_alpha_words_ratio": 0.8},
    {"min_doc_words": 5, "max_doc_words": 40, "min_avg_word_length": 2, "max_avg_word_length": 6,
     "max_non_alpha_words_ratio": None},
    {"min_doc_words": None, "max_doc_words": None, "min_avg_word_length": None, "max_avg_word_length": 4,
     "max_non_alpha_words_ratio": 0.5},
]


@pytest.mark.parametrize("settings", QUALITY_SETTINGS)
def test_quality_decides_as_datatrove(settings):
    off = {"max_symbol_word_ratio": None, "max_bullet_lines_ratio": None, "max_ellipsis_lines_ratio": None,
           "min_stop_words": None, "language": WhitespaceWords()}
    ours, theirs = GopherQuality(**settings, **off), GopherQualityFilter(**settings, **off)
    results = [(outcome(ours, text), outcome(theirs, text)) for text in edge_texts(1500)]
    assert [a for a, _ in results] == [b for _, b in results]
    assert len({str(a) for a, _ in results}) >= 3  # the texts reach several outcomes, not only "keep"


@pytest.mark.parametrize(("line_fraction", "ngrams"), [(0.3, ((5, 0.15),)), (None, ((3, 0.1),)),
                                                        (0.1, ((2, 0.2), (5, 0.05))), (0.5, ())])
def test_repetition_decides_as_datatrove(line_fraction, ngrams):
    settings = {"dup_line_frac": line_fraction, "dup_para_frac": None, "dup_line_char_frac": None,
                "dup_para_char_frac": None, "top_n_grams": (), "dup_n_grams": ngrams, "language": WhitespaceWords()}
    ours, theirs = GopherRepetition(**settings), GopherRepetitionFilter(**settings)
    results = [(outcome(ours, text), outcome(theirs, text)) for text in edge_texts(1500, seed=1)]
    assert [a for a, _ in results] == [b for _, b in results]
    assert len({str(a) for a, _ in results}) >= 2


def test_filter_steps_build_ours_and_refuse_checks_they_do_not_compute():
    steps = [step.inner for step in filter_steps(DataFilterConfig(), "/tmp/unused")]
    assert [type(s) for s in steps] == [GopherQuality, GopherRepetition]
    with pytest.raises(AssertionError, match="only the checks we set"):
        GopherQuality(min_stop_words=2, language=WhitespaceWords())
    with pytest.raises(AssertionError, match="only the checks we set"):
        GopherRepetition(language=WhitespaceWords())  # DataTrove's defaults turn on paragraph and top n-gram checks
