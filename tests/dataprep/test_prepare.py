"""The prepare task end to end: llm-launch recipe=prepare_sample on 2 local ranks, then a cpt job's reader."""

import json
import subprocess
import sys

import numpy as np
import pytest
from llm_launch.launcher import PROJECT_ROOT
from llm_launch.train.data.packed import PackedDataset
from llm_launch.train.data.prepare import load_fast_tokenizer


def launch(out_dir, *overrides, recipe="prepare_sample"):
    command = [sys.executable, "-m", "llm_launch.launcher.cli", f"recipe={recipe}", f"output_dir={out_dir}", *overrides]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=PROJECT_ROOT)


@pytest.mark.system
def test_prepare_sample_recipe_writes_shards_a_cpt_job_can_read(tmp_path):
    result = launch(tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((tmp_path / "COMPLETE").read_text())
    assert summary["task"] == "prepare" and summary["world_size"] == 2
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    assert manifest["seq_len"] == 256 and manifest["bad_input"]["total"] == 0
    assert manifest["sources"][0]["documents_read"] == 298
    assert manifest["splits"]["train"]["shards"] >= 3  # built by both ranks
    train = PackedDataset.open(summary["train_path"])
    valid = PackedDataset.open(summary["valid_path"])
    assert len(train) == summary["train_rows"] > 1000 and len(valid) == summary["valid_rows"] > 0
    assert train.seq_len == 256 and not train.has_loss_mask
    tokenizer, eos = load_fast_tokenizer(PROJECT_ROOT / "data" / "sample" / "tokenizer")
    rows = np.stack([train.row(i) for i in range(len(train))])
    split = manifest["splits"]["train"]
    assert (rows == eos).sum() >= split["documents"] - split["shards"]  # a shard's tail (remainder) may hold one
    assert tokenizer.decode(train.row(0).tolist()).strip()

    plan = launch(tmp_path / "cpt", f"training.data.train_path={summary['train_path']}",
                  f"training.data.valid_path={summary['valid_path']}", "action=plan", recipe="tiny_llama_cpt")
    assert plan.returncode == 0, plan.stderr[-2000:]

    again = launch(tmp_path)
    assert again.returncode == 0 and "already holds this run's data" in again.stdout
