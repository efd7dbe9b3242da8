"""Step-indexed batches: a pure function of (seed, step), split without overlap across ranks."""

import numpy as np
import pytest
import torch
from llm_launch.train.data.loader import StepBatches
from llm_launch.train.data.packed import PackedDataset, write_packed
from llm_launch.train.errors import JobError


@pytest.fixture()
def dataset(tmp_path):
    docs = [[i % 50 + 4] * 7 for i in range(300)]  # rows become distinguishable by content
    write_packed(tmp_path / "ds", docs, seq_len=8, eos_id=1, vocab_size=100)
    return PackedDataset.open(tmp_path / "ds")


def _rows(batches) -> list[tuple[int, ...]]:
    return [tuple(r.tolist()) for ids, _mask in batches for r in ids]


def test_same_step_same_rows_and_split_into_micro_batches(dataset):
    make = lambda: StepBatches(dataset, seed=7, global_batch=8, micro_batch=2, dp_rank=0, dp_size=2)  # noqa: E731
    first, again = make().micro_batches(5), make().micro_batches(5)
    assert [ids.shape for ids, _ in first] == [torch.Size([2, 8])] * 2
    assert all(mask is None for _, mask in first)  # pre-training data has no loss mask
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(first, again, strict=True))


def test_ranks_partition_the_global_batch(dataset):
    ranks = [StepBatches(dataset, seed=1, global_batch=8, micro_batch=4, dp_rank=r, dp_size=2) for r in (0, 1)]
    single = StepBatches(dataset, seed=1, global_batch=8, micro_batch=8, dp_rank=0, dp_size=1)
    for step in (0, 3, 40):  # 40 wraps into a later epoch
        split = _rows(ranks[0].micro_batches(step)) + _rows(ranks[1].micro_batches(step))
        assert split == _rows(single.micro_batches(step))


def test_an_epoch_visits_every_row_once(dataset):
    batches = StepBatches(dataset, seed=2, global_batch=len(dataset), micro_batch=len(dataset), dp_rank=0, dp_size=1)
    seen = np.stack([r.numpy() for r in batches.micro_batches(0)[0][0]])
    whole = np.stack([dataset.row(i) for i in range(len(dataset))])
    assert sorted(map(tuple, seen.tolist())) == sorted(map(tuple, whole.tolist()))


def test_too_little_data_is_a_clear_error(dataset):
    with pytest.raises(JobError, match="fewer than one global batch"):
        StepBatches(dataset, seed=0, global_batch=len(dataset) + 1, micro_batch=1, dp_rank=0, dp_size=1)
