"""FullSignatures (dataprep/blocks/dedup.py) gives DataTrove's MinHash signature of the same shingles, number for
number, and sees the same words as DataTrove's text simplification does."""

import numpy as np
import pytest
from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature
from datatrove.utils.hashing import HashConfig
from datatrove.utils.text import simplify_text
from llm_launch.dataprep.blocks.dedup import PLAIN_WORDS, FullSignatures
from llm_launch.dataprep.blocks.filters import WhitespaceWords
from pipeline_helpers import edge_texts


def config(precision: int) -> MinhashConfig:
    return MinhashConfig(n_grams=5, num_buckets=8, hashes_per_bucket=15, seed=3, norm_config=PLAIN_WORDS,
                         hash_config=HashConfig(precision=precision, hash_fc="sha1"))


@pytest.mark.parametrize("precision", [64, 32])
def test_signature_equals_datatroves(tmp_path, precision):
    ours = FullSignatures(str(tmp_path / "ours"), config=config(precision), language=WhitespaceWords())
    theirs = MinhashDedupSignature(str(tmp_path / "theirs"), config=config(precision), language=WhitespaceWords())
    rng = np.random.default_rng(precision)
    for count in (1, 2, 7, 300):
        # whole uint64 range: products and sums wrap around, and (x & p) + (x >> 61) lands on both sides of p
        shingles = rng.integers(0, 2**64, size=(count, 1), dtype=np.uint64, endpoint=False)
        assert ours.get_signature(shingles) == theirs.get_signature(shingles)
    edges = np.array([[0], [1], [2**61 - 2], [2**61 - 1], [2**61], [2**64 - 1]], dtype=np.uint64)
    assert ours.get_signature(edges) == theirs.get_signature(edges)


def test_words_equal_datatroves_simplified_text(tmp_path):
    step = FullSignatures(str(tmp_path), config=config(64), language=WhitespaceWords())
    assert step._plain_words
    texts = edge_texts(500, seed=2) + ["İstanbul\u00a0ÆSIR\u2029x\x1cy\x85z", "  lead and trail \n "]
    for text in texts:
        assert text.lower().split() == WhitespaceWords().word_tokenize(simplify_text(text, PLAIN_WORDS))
    other = FullSignatures(str(tmp_path), config=MinhashConfig(norm_config=config(64).norm_config.__class__()),
                           language=WhitespaceWords())
    assert not other._plain_words  # DataTrove's default simplification (punctuation, digits): its own path
