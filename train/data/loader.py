"""Step-indexed batches: which rows each rank reads at each step, as a pure function of
(seed, step), so resuming at step k reads exactly what an uninterrupted run would have.

Each epoch is a seeded permutation of the dataset's rows. Step s takes global-batch rows
[s*G, (s+1)*G) of the endless sequence of epochs; data-parallel rank r takes its contiguous
slice of G/dp rows, split into micro-batches. The sampler's state is the step alone.
"""

from __future__ import annotations

import numpy as np
import torch
from llm_launch.train.data.packed import PackedDataset
from llm_launch.train.errors import JobError


class StepBatches:
    """Micro-batches of one data-parallel rank, for any step."""

    def __init__(self, dataset: PackedDataset, *, seed: int, global_batch: int, micro_batch: int,
                 dp_rank: int, dp_size: int):
        if len(dataset) < global_batch:
            raise JobError(f"{dataset.path} has {len(dataset)} rows, fewer than one global batch "
                             f"({global_batch}); use more data or a smaller training.global_batch_size")
        self.dataset, self.seed = dataset, seed
        self.global_batch, self.micro_batch = global_batch, micro_batch
        self.dp_rank, self.dp_size = dp_rank, dp_size
        self._epoch_cache: tuple[int, np.ndarray] | None = None

    def _epoch_order(self, epoch: int) -> np.ndarray:
        if self._epoch_cache is None or self._epoch_cache[0] != epoch:
            rng = np.random.Generator(np.random.PCG64([self.seed, epoch]))
            self._epoch_cache = (epoch, rng.permutation(len(self.dataset)))
        return self._epoch_cache[1]

    def _global_row(self, position: int) -> int:
        epoch, offset = divmod(position, len(self.dataset))
        return int(self._epoch_order(epoch)[offset])

    def micro_batches(self, step: int) -> list[Rows]:
        """This rank's micro-batches for a step: [micro_batch, seq_len] token ids and loss masks."""
        per_rank = self.global_batch // self.dp_size
        start = step * self.global_batch + self.dp_rank * per_rank
        return split_rows(self.dataset, [self._global_row(start + i) for i in range(per_rank)], self.micro_batch)


Rows = tuple[torch.Tensor, torch.Tensor | None]
"""Token ids [rows, seq_len] (int64) and the loss mask (uint8, 1 = learn this token) or None."""


def split_rows(dataset: PackedDataset, row_ids: list[int], size: int) -> list[Rows]:
    """Read rows and split them into batches of size rows, with their loss masks when the data has them."""
    if not row_ids:
        return []
    ids = torch.from_numpy(np.stack([dataset.row(i) for i in row_ids])).split(size)
    if not getattr(dataset, "has_loss_mask", False):
        return [(chunk, None) for chunk in ids]
    masks = torch.from_numpy(np.stack([dataset.row_mask(i) for i in row_ids])).split(size)
    return list(zip(ids, masks, strict=True))


def eval_batches(dataset: PackedDataset, *, global_batch: int, micro_batch: int, batches: int, dp_rank: int,
                 dp_size: int) -> list[Rows]:
    """A fixed validation set, the same whatever the layout: the first batches x global_batch rows
    (or all there are), each data-parallel rank taking a contiguous share."""
    count = min(len(dataset), global_batch * batches)
    per_rank = count // dp_size
    start = dp_rank * per_rank
    return split_rows(dataset, list(range(start, start + per_rank)), micro_batch)
