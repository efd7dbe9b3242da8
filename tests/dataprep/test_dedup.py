"""Exact and near-duplicate removal keeps the first of each cluster and counts the rest."""

from llm_launch.dataprep.dedup import Deduplicator, MinHasher, Unit, digest
from llm_launch.dataprep.normalize import paragraphs
from llm_launch.launcher.config.schema import DedupConfig
from pipeline_helpers import chapters


def units(text: str, cfg: DedupConfig) -> list[Unit]:
    hasher = MinHasher(cfg.num_perm, cfg.shingle_size) if cfg.near else None
    pieces = paragraphs(text) if cfg.granularity == "paragraph" else [text]
    return [Unit(p, digest(p), hasher.signature(p) if hasher else None) for p in pieces]


def edit(text: str, every: int) -> str:
    """Change one word in `every`: a near duplicate whose similarity falls as `every` shrinks."""
    words = text.split(" ")
    return " ".join("CHANGED" if i % every == 0 else w for i, w in enumerate(words))


def run(docs: list[str], cfg: DedupConfig) -> tuple[list[str | None], Deduplicator]:
    dedup = Deduplicator(cfg)
    return [dedup.keep(units(d, cfg), f"doc{i}") for i, d in enumerate(docs)], dedup


def test_exact_duplicates_keep_the_first():
    a, b = chapters(2)
    kept, dedup = run([a, b, a, a], DedupConfig(near=False))
    assert kept == [a, b, None, None]
    assert dedup.tally.counts == {"exact_duplicate_documents": 2}
    assert dedup.tally.examples["exact_duplicate_documents"][0] == {"where": "doc2", "detail": "duplicate of doc0"}


def test_near_duplicates_above_the_threshold_are_found_and_one_is_kept():
    originals = chapters(6, start=10)
    planted = [edit(originals[0], 200), edit(originals[3], 100)]  # shingle Jaccard 0.97 and 0.92
    far = edit(originals[1], 25)  # shingle Jaccard about 0.69: not a duplicate at 0.8
    docs = originals + planted + [far]
    kept, dedup = run(docs, DedupConfig(exact=True, near=True, threshold=0.8))
    assert kept[:6] == originals
    assert kept[6] is None and kept[7] is None
    assert kept[8] == far
    assert dedup.tally.counts == {"near_duplicate_documents": 2}
    details = [e["detail"] for e in dedup.tally.examples["near_duplicate_documents"]]
    assert details == ["duplicate of doc0", "duplicate of doc3"]


def test_threshold_decides():
    original = chapters(1, start=20)[0]
    variant = edit(original, 25)  # shingle Jaccard 0.67
    assert run([original, variant], DedupConfig(threshold=0.5))[0][1] is None
    assert run([original, variant], DedupConfig(threshold=0.95))[0][1] == variant


def test_paragraph_granularity_drops_repeated_paragraphs_only():
    a, b, c = chapters(3, start=30)
    boilerplate = "This page is part of an archive. All rights reserved by nobody in particular at all."
    first = f"{a}\n\n{boilerplate}"
    second = f"{b}\n\n{boilerplate}"
    third = boilerplate
    kept, dedup = run([first, second, third, c], DedupConfig(granularity="paragraph"))
    assert kept[0] == first
    assert kept[1] == b
    assert kept[2] is None
    assert kept[3] == c
    assert dedup.tally.counts["exact_duplicate_paragraphs"] == 2
    assert dedup.tally.counts["documents_emptied_by_paragraph_dedup"] == 1
