"""task=prepare on DataTrove (dataprep/pipeline.py) with 2 local workers, against the in-memory pipeline
(dataprep/run.py) on the same inputs: same kept documents, filter and dedup counts, same packed rows."""

from __future__ import annotations

import json

import pytest
from datatrove_helpers import kept_ids, shard_hashes
from llm_launch.dataprep import pipeline, run
from llm_launch.dataprep.dedup import Deduplicator, MinHasher, Unit, digest
from llm_launch.dataprep.normalize import normalize_text
from llm_launch.dataprep.synthetic import make_corpus, quality, write_corpus
from llm_launch.launcher.config.schema import DataSourceConfig
from pipeline_helpers import chapters, prep_config, write_jsonl


def two_files(folder):
    """60 KJV chapters in two files, with an exact and a near duplicate, a short record and a malformed line."""
    texts = chapters(60)
    near = texts[5].replace(" the ", " a ", 1)
    first = [{"id": i, "text": t} for i, t in enumerate(texts[:30])] + [{"id": "copy-3", "text": texts[3]}]
    second = [{"id": 30 + i, "text": t} for i, t in enumerate(texts[30:])] + [{"id": "near-5", "text": near},
                                                                               {"id": "short", "text": "too short"}]
    write_jsonl(folder / "a.jsonl", first)
    path = write_jsonl(folder / "b.jsonl", second)
    path.write_text(path.read_text() + "{not json\n")
    return DataSourceConfig(name="kjv", path=str(folder), id_field="id")


@pytest.mark.system
def test_two_workers_keep_the_same_documents_and_write_the_same_rows_as_the_in_memory_pipeline(tmp_path):
    source = two_files(tmp_path / "in")
    settings = dict(workers=2, task_bytes=1, shuffle=False, output__shard_chars=10**9, output__keep_work=True)
    old = run.prepare_data(prep_config(tmp_path / "old", source, **settings), progress=False)
    cfg = prep_config(tmp_path / "new", source, **settings)
    new = pipeline.prepare_data(cfg, progress=False)
    assert json.loads((tmp_path / "new" / "manifest.json").read_text())["fingerprint"] == new["fingerprint"]
    for key in ("documents_read", "bad_input", "filtered", "duplicates", "kept", "documents_selected"):
        assert new["sources"][0][key] == old["sources"][0][key], key
    assert new["sources"][0]["kept"] == 60 and new["sources"][0]["duplicates"] == 2
    assert {k: v["count"] for k, v in new["dedup"]["removed"].items()} == {
        "exact_duplicate_documents": 1, "near_duplicate_documents": 1}
    assert [e["where"] for e in new["dedup"]["removed"]["near_duplicate_documents"]["examples"]] == [
        f"{tmp_path}/in/b.jsonl:31 (id=near-5)"]
    assert new["filters"]["dropped"].keys() == old["filters"]["dropped"].keys() == {"min_words"}
    assert new["bad_input"] == old["bad_input"]
    assert len(kept_ids(cfg)) == 60
    assert new["splits"]["train"]["rows"] == old["splits"]["train"]["rows"] > 100
    assert shard_hashes(tmp_path / "new") == shard_hashes(tmp_path / "old")  # byte-identical rows


@pytest.mark.system
def test_planted_near_duplicates_are_found_by_both_pipelines(tmp_path):
    """Pairs at Jaccard >= 0.8 against non-duplicates at <= 0.5, with the decision threshold between them (0.7):
    a threshold of 0.8 itself would miss about half the pairs that sit right at 0.8 (the MinHash estimate's
    standard deviation is about 0.035 with 128 permutations)."""
    corpus = make_corpus(500, seed=3)
    write_corpus(corpus, tmp_path / "in", files=2)
    source = DataSourceConfig(name="synthetic", path=str(tmp_path / "in"), id_field="id")
    cfg = prep_config(tmp_path / "new", source, workers=2, task_bytes=1, output__keep_work=True,
                      filters__min_alpha_word_fraction=0.0, dedup__threshold=0.7)
    pipeline.prepare_data(cfg, progress=False)
    kept = {int(where.rsplit("id=", 1)[1].rstrip(")")) for where in kept_ids(cfg)}
    new = quality(corpus, set(range(len(corpus.texts))) - kept)

    dedup, hasher, removed = Deduplicator(cfg.dedup), MinHasher(cfg.dedup.num_perm, cfg.dedup.shingle_size), set()
    for index, text in enumerate(corpus.texts):
        text = normalize_text(text)
        if dedup.keep([Unit(text, digest(text), hasher.signature(text))], str(index)) is None:
            removed.add(index)
    old = quality(corpus, removed)
    assert new["pairs"] >= 40 and new["non_duplicate_pairs"] >= 40
    for result in (old, new):
        assert result["recall"] >= 0.95 and result["precision"] >= 0.99, (old, new)
