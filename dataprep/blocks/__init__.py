"""DataTrove pipeline steps (blocks) of data preparation, one module per stage of the pipeline.

    reports.py  per-task counts and examples (bad input, filters, duplicates) written next to the intermediates
    read.py     our readers (JSONL, Parquet, text; HTML, PDF and DOCX through extraction) and normalisation
    filters.py  the quality filters: DataTrove's Gopher filters where they match ours, ours where DataTrove has none
    dedup.py    paragraph units, the verification of MinHash candidate pairs, counting what dedup removed
    mix.py      weighted selection, the train/valid split and the seeded scatter into shard buckets
    pack.py     one bucket of documents -> one packed shard of our format (train/data/packed.py)
"""
