"""Statements in the docs and config comments that the code or the shipped files can contradict (issue 23)."""

from __future__ import annotations

import re

from llm_launch.launcher import PROJECT_ROOT


def _lines(path: str) -> int:
    return sum(1 for line in (PROJECT_ROOT / path).read_text().splitlines() if line.strip())


def test_data_md_counts_the_shipped_preference_pairs_and_names_the_dpo_trainer():
    text = (PROJECT_ROOT / "docs" / "data.md").read_text()
    assert "No DPO trainer exists yet" not in text and (PROJECT_ROOT / "train" / "dpo.py").is_file()
    pairs = re.search(r"`preference\.jsonl` and `preference_valid\.jsonl` \((\d+) and (\d+) pairs\)", text)
    assert pairs, "docs/data.md no longer states the preference sample sizes"
    assert (int(pairs[1]), int(pairs[2])) == (_lines("data/sample/sft/preference.jsonl"),
                                              _lines("data/sample/sft/preference_valid.jsonl"))
    records = re.search(r"`valid\.jsonl` \((\d+) instruction and chat records\)", text)
    assert int(records[1]) == _lines("data/sample/sft/train.jsonl") + _lines("data/sample/sft/valid.jsonl")


def test_training_md_records_the_gpu_runs_that_docs_benchmarks_has():
    assert "GPU check" in (PROJECT_ROOT / "docs" / "benchmarks.md").read_text()
    text = (PROJECT_ROOT / "docs" / "training.md").read_text()
    assert "None of it has run on GPUs" not in text and "bench/gpu_check.sh" in text


def test_cpu_instance_comment_agrees_that_multi_node_cpu_runs(cli):
    """A CPU job spans nodes over gloo/TCP (it ran on a two-node Slurm); the comment must not say it is refused."""
    assert "multi-node CPU jobs are refused" not in (PROJECT_ROOT / "conf" / "instance" / "cpu.yaml").read_text()
    result = cli("instance=cpu", "cluster=slurm", "trainer.num_nodes=2", "training.global_batch_size=16")
    assert result.returncode == 0, result.stderr
