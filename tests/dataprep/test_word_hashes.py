"""word_hashes gives one hash per word of text.split(), the same for the same word wherever it stands."""

import numpy as np
from llm_launch.dataprep.word_hashes import word_hashes
from pipeline_helpers import edge_texts


def test_one_hash_per_split_word_whatever_its_place():
    texts = [*edge_texts(400, seed=3), "x" * 70_000 + " y x", "\u3000a\u3000b\x1c\x1d\x1e\x1f\x85c\u2029"]
    by_word: dict[str, int] = {}
    for text in texts:
        words, hashes = text.split(), word_hashes(text)
        assert hashes.dtype == np.uint64 and len(hashes) == len(words)
        for word, value in zip(words, hashes.tolist(), strict=True):
            assert by_word.setdefault(word, value) == value, word
            assert word_hashes(word).tolist() == [value]  # the word alone: position does not matter
    assert len(set(by_word.values())) == len(by_word)  # distinct words, distinct hashes
    assert len(by_word) > 20


def test_text_without_words():
    for text in ("", " ", "\n\t\u3000"):
        assert len(word_hashes(text)) == 0
