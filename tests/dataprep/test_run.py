"""The whole pipeline: nothing lost in packing, byte-identical reruns, resumable, everything counted."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from llm_launch.dataprep.run import OutputInUse, prepare_data
from llm_launch.dataprep.tokenize_pack import read_unit
from llm_launch.launcher.config.schema import DataSourceConfig
from llm_launch.train.data.packed import PackedDataset
from llm_launch.train.data.prepare import load_fast_tokenizer
from pipeline_helpers import TOKENIZER, chapters, kjv_source, prep_config, write_jsonl


def tree_hashes(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file() and ".work" not in p.parts}


def two_sources(folder: Path) -> list[DataSourceConfig]:
    domain = kjv_source(folder, count=30, name="domain")
    general = kjv_source(folder, count=30, name="general", start=100)
    general.weight = 0.25
    return [domain, general]


def test_packing_loses_no_token_and_rows_hold_the_documents_in_order(tmp_path):
    cfg = prep_config(tmp_path / "out", *two_sources(tmp_path / "in"), output__shard_chars=20_000,
                      output__keep_work=True, split__valid_fraction=0.1)
    manifest = prepare_data(cfg, progress=False)
    tokenizer, eos = load_fast_tokenizer(TOKENIZER)
    for name in ("train", "valid"):
        summary = manifest["splits"][name]
        assert summary["tokens_in"] == summary["tokens_packed"] + summary["remainder_tokens"]
        dataset = PackedDataset.open(tmp_path / "out" / name)
        assert len(dataset) == summary["rows"] and summary["shards"] > (1 if name == "train" else 0)
        index = dataset.index
        rows_seen = 0
        for number, shard in enumerate(index["shards"]):
            docs = read_unit(tmp_path / "out" / ".work" / name / f"shard_{number:05d}.jsonl")
            stream = [t for d in docs for t in (*tokenizer.encode(d.text, add_special_tokens=False).ids, eos)]
            rows = np.concatenate([dataset.row(rows_seen + i) for i in range(shard["rows"])])
            assert rows.tolist() == stream[:len(rows)]
            rows_seen += shard["rows"]
    selected = sum(s["documents_selected"] for s in manifest["sources"])
    assert manifest["splits"]["valid"]["documents"] == round(selected * 0.1)


def test_mixing_weights_show_in_the_manifest(tmp_path):
    cfg = prep_config(tmp_path / "out", *two_sources(tmp_path / "in"))
    sources = prepare_data(cfg, progress=False)["sources"]
    shares = [s["share_selected"] for s in sources]
    assert sources[0]["documents_selected"] == 30
    assert shares[1] == pytest.approx(0.2, abs=0.03)  # weights 1 : 0.25
    tokens = [s["tokens_in"]["train"] for s in sources]
    assert tokens[1] / sum(tokens) == pytest.approx(0.2, abs=0.03)


def test_two_runs_and_any_worker_count_give_identical_bytes(tmp_path):
    hashes = []
    sources = two_sources(tmp_path / "in")
    for name, workers in (("a", 1), ("b", 1), ("c", 2)):
        cfg = prep_config(tmp_path / name, *sources, workers=workers,
                          output__shard_chars=20_000, split__valid_fraction=0.1)
        prepare_data(cfg, progress=False)
        hashes.append(tree_hashes(tmp_path / name))
    assert hashes[0] == hashes[1] == hashes[2]
    assert "manifest.json" in hashes[0] and "train/shard_00001.bin" in hashes[0]


def test_rerun_rebuilds_only_a_deleted_shard(tmp_path, capsys):
    cfg = prep_config(tmp_path / "out", kjv_source(tmp_path / "in"), output__shard_chars=20_000)
    prepare_data(cfg, progress=False)
    out = tmp_path / "out"
    before = tree_hashes(out)
    shards = sorted((out / "train").glob("shard_*.bin"))
    assert len(shards) >= 3
    untouched = {p: p.stat().st_mtime_ns for p in shards if p != shards[1]}
    shards[1].unlink()
    capsys.readouterr()
    prepare_data(cfg, progress=True)
    assert "built 1 shard(s), skipped" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in untouched} == untouched
    assert tree_hashes(out) == before
    prepare_data(cfg, progress=True)
    assert "already holds this run's data" in capsys.readouterr().out


def test_bad_input_filters_and_duplicates_are_counted_in_the_manifest(tmp_path):
    good = chapters(6)
    path = tmp_path / "in" / "messy.jsonl"
    write_jsonl(path, [{"text": t} for t in good] + [{"text": good[0]}, {"text": "too short"}, {"nope": 1}])
    with path.open("ab") as f:
        f.write(b'{"text": "broken\n\xff\xfe\n')
    sources = [DataSourceConfig(name="messy", path=str(path)),
               DataSourceConfig(name="gone", path=str(tmp_path / "missing.jsonl"))]
    manifest = prepare_data(prep_config(tmp_path / "out", *sources), progress=False)
    kinds = manifest["bad_input"]["kinds"]
    assert {k: v["count"] for k, v in kinds.items()} == {"malformed_json": 1, "missing_text_field": 1,
                                                         "undecodable_bytes": 1, "unreadable_file": 1}
    assert kinds["unreadable_file"]["examples"][0]["where"].endswith("missing.jsonl")
    assert manifest["bad_input"]["total"] == 4
    assert manifest["filters"]["dropped"]["min_words"]["count"] == 1
    assert manifest["dedup"]["removed"]["exact_duplicate_documents"]["count"] == 1
    messy = manifest["sources"][0]
    assert messy["documents_read"] == 8 and messy["kept"] == 6 and messy["bad_input"] == 3
    assert manifest["splits"]["train"]["documents"] == 6


def test_changed_settings_do_not_overwrite_a_finished_dataset_by_accident(tmp_path):
    source = kjv_source(tmp_path / "in", count=8)
    prepare_data(prep_config(tmp_path / "out", source), progress=False)
    changed = prep_config(tmp_path / "out", source, seed=8)
    with pytest.raises(OutputInUse, match="data_prep.output.overwrite=true"):
        prepare_data(changed, progress=False)
    changed.output.overwrite = True
    assert prepare_data(changed, progress=False)["seed"] == 8
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["seed"] == 8
