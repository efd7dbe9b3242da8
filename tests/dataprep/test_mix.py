"""Mixing honours the weights, is seeded, and the split is a seeded share of documents."""

import pytest
from llm_launch.dataprep.mix import Doc, mix, split


def source(index: int, count: int, size: int = 100) -> list[Doc]:
    return [Doc(index, f"{index}-{i}-" + "x" * size) for i in range(count)]


def test_weights_set_each_sources_share_and_the_scarce_source_is_used_whole():
    domain, general = source(0, 200), source(1, 1000)
    mixed, stats = mix([domain, general], [0.99, 0.01], seed=1, shuffle=True)
    assert stats[0]["documents_selected"] == 200  # the binding source is used whole
    assert stats[1]["documents_selected"] in (2, 3)  # 1% of the mix
    assert stats[1]["share_selected"] == pytest.approx(0.01, abs=0.006)
    assert len(mixed) == stats[0]["documents_selected"] + stats[1]["documents_selected"]

    even, stats = mix([domain, general], [1, 1], seed=1, shuffle=True)
    assert stats[0]["documents_selected"] == 200 and stats[1]["documents_selected"] == 200


def test_mixing_is_deterministic_with_the_seed_and_varies_with_it():
    sources = [source(0, 300), source(1, 300)]
    first, _ = mix(sources, [0.7, 0.3], seed=5, shuffle=True)
    again, _ = mix(sources, [0.7, 0.3], seed=5, shuffle=True)
    other, _ = mix(sources, [0.7, 0.3], seed=6, shuffle=True)
    assert [d.text for d in first] == [d.text for d in again]
    assert [d.text for d in first] != [d.text for d in other]
    assert {d.source for d in first[:40]} == {0, 1}  # shuffled: sources interleave


def test_without_shuffle_reading_order_is_kept():
    mixed, _ = mix([source(0, 5), source(1, 5)], [1, 1], seed=1, shuffle=False)
    assert [d.text for d in mixed] == [d.text for d in source(0, 5) + source(1, 5)]


def test_empty_source_is_reported_and_does_not_block_the_mix():
    mixed, stats = mix([source(0, 10), []], [0.5, 0.5], seed=1, shuffle=False)
    assert len(mixed) == 10 and stats[1]["documents_selected"] == 0


def test_split_takes_a_seeded_fraction():
    docs = source(0, 100)
    train, valid = split(docs, 0.1, seed=3)
    assert len(valid) == 10 and len(train) == 90
    assert {d.text for d in train} | {d.text for d in valid} == {d.text for d in docs}
    assert split(docs, 0.1, seed=3)[1] == valid
    assert split(docs[:3], 0.01, seed=3)[1] != []  # at least one document when the fraction is positive
    assert split(docs, 0.0, seed=3) == (docs, [])


def test_the_report_states_each_sources_contribution_and_warns_when_most_of_one_is_left_out():
    from llm_launch.dataprep.prepare import mix_report

    big, small = source(0, 432), source(1, 22)
    _, stats = mix([big, small], [1, 1], seed=1, shuffle=True)
    sources = [{"name": name, "weight": 1, **s} for name, s in zip(("big", "small"), stats, strict=True)]
    lines = mix_report(sources)
    assert stats[0]["documents_selected"] == 22  # equal weights: as much of big as small has (the 22 of 432)
    assert lines[0] == f"source big: 22 of 432 kept documents, {stats[0]['share_selected']:.1%} of the mix"
    assert lines[1] == f"source small: 22 of 22 kept documents, {stats[1]['share_selected']:.1%} of the mix"
    (warning,) = lines[2:]
    assert warning.startswith("warning: data_prep.sources[0].weight: source big contributes only 5% of its kept text")
    _, even = mix([big, small], [432, 22], seed=1, shuffle=True)
    assert len(mix_report([{"name": n, "weight": w, **s} for n, w, s in zip("ab", (432, 22), even, strict=True)])) == 2
