"""Data preparation, a job kind of its own (task=prepare): raw documents to packed token shards, a manifest,
and a train/valid split. It reads only the job's data_prep section (llm_launch.launcher.data_prep fills its defaults and
plans it); the training engine reads its output (train/data/packed.py).

The job runs on DataTrove (https://github.com/huggingface/datatrove):
    pipeline.py      the stages built from data_prep (DataTrove steps, intermediates on any fsspec folder)
    executors.py     each host runs its share of every stage's tasks on LocalPipelineExecutor, barriers between
    blocks/          our steps: read/extract/normalise, filters, dedup glue, mix/scatter, pack
    synthetic.py     synthetic corpora with planted near-duplicates (tests, bench)

The pieces it reuses, one module each (run.py is the former in-memory pipeline, kept as the baseline):
    read.py          list input files and turn them into work items (JSONL, Parquet, text; HTML, PDF and
                     DOCX through extract.py), counting bad input in a Tally (launcher/jsonl.py)
    normalize.py     Unicode NFC, control characters, whitespace
    filters.py       quality filters, each counted under its own name
    process.py       the per-document work (extract, normalise, filter, MinHash) run in a process pool
    dedup.py         exact (SHA-256) and near-duplicate (MinHash LSH) removal, document or paragraph level
    mix.py           weighted mixing of sources, seeded shuffle and the train/valid split
    tokenize_pack.py tokenize one work unit with a Hugging Face fast tokenizer and write it as a shard
    manifest.py      the fingerprint of a run, per-split index.json and manifest.json
    run.py           the in-memory pipeline (rank 0 plans, ranks build shards): the tests' and bench's baseline

The files of a source and the pip packages its settings need are listed by llm_launch.launcher.data_sources,
which the plan and prepare.py (where the job runs) both use.

Entry point as a job: dataprep/prepare.py (python -m llm_launch.dataprep.prepare --job job.yaml).
"""
