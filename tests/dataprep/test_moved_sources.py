"""The same corpus at another place gives the same dataset (dataprep/blocks/mix.py): which documents the mix
selects, which the split holds out and which bucket each goes to are seeded by a document's place within its source
(files.relative_name, blocks/read.py MIX_KEY), not by its path. S3 against local files: test_pipeline_system.py."""

from __future__ import annotations

import shutil

import pytest
from datatrove_helpers import shard_hashes
from llm_launch.dataprep import pipeline
from llm_launch.dataprep.files import relative_name
from llm_launch.launcher.config.schema import DataSourceConfig
from pipeline_helpers import chapters, prep_config, write_jsonl


@pytest.mark.parametrize(("root", "path", "name"), [
    ("/data/web", "/data/web/a.jsonl", "a.jsonl"),
    ("/data/web/", "/data/web/2024/b.jsonl", "2024/b.jsonl"),
    ("data/./web", "data/web/2024/b.jsonl", "2024/b.jsonl"),
    ("/data/one.parquet", "/data/one.parquet", "one.parquet"),
    ("s3://corpus/web", "s3://corpus/web/2024/b.jsonl", "2024/b.jsonl"),
    ("s3://corpus/web/", "s3://corpus/web/a.jsonl", "a.jsonl"),
    ("s3://corpus/extra/one.parquet", "s3://corpus/extra/one.parquet", "one.parquet"),
])
def test_a_file_is_named_by_its_place_within_its_source(root, path, name):
    assert relative_name(root, path) == name


def write_corpus(folder):
    """Two sources: a folder of two files (one nested), and one file; texts long enough to pass the filters."""
    texts = chapters(90)
    write_jsonl(folder / "web" / "a.jsonl", [{"id": i, "text": t} for i, t in enumerate(texts[:30])])
    write_jsonl(folder / "web" / "2024" / "b.jsonl", [{"id": i, "text": t} for i, t in enumerate(texts[30:60])])
    write_jsonl(folder / "books.jsonl", [{"id": i, "text": t} for i, t in enumerate(texts[60:])])


def sources(folder):
    return (DataSourceConfig(name="web", path=str(folder / "web"), weight=1.0, id_field="id"),
            DataSourceConfig(name="books", path=str(folder / "books.jsonl"), weight=3.0, id_field="id"))


def test_the_same_corpus_moved_to_another_folder_gives_the_same_shards(tmp_path):
    settings = dict(shuffle=True, split__valid_fraction=0.2, output__shard_chars=20_000)
    write_corpus(tmp_path / "here")
    here = pipeline.prepare_data(prep_config(tmp_path / "out_here", *sources(tmp_path / "here"), **settings),
                                 progress=False)
    shutil.copytree(tmp_path / "here", tmp_path / "moved" / "elsewhere")
    moved = pipeline.prepare_data(prep_config(tmp_path / "out_moved", *sources(tmp_path / "moved" / "elsewhere"),
                                              **settings), progress=False)
    web, books = here["sources"]
    assert 0 < web["documents_selected"] < web["kept"] == 60  # the mix takes part of the larger source
    assert books["documents_selected"] == books["kept"] == 30
    assert here["splits"]["valid"]["rows"] > 0 and len(shard_hashes(tmp_path / "out_here")) > 2
    assert [s["documents_selected"] for s in moved["sources"]] == [web["documents_selected"], books["documents_selected"]]
    assert shard_hashes(tmp_path / "out_moved") == shard_hashes(tmp_path / "out_here")
