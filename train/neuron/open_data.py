"""The training data of a Neuron job: packed shards, packing a raw corpus first (rank 0; the others wait)."""

from __future__ import annotations

from pathlib import Path

import torch.distributed as dist

from launcher.config.schema import JobConfig
from train.data.packed import INDEX_FILE, PackedDataset
from train.data.prepare import prepare_corpus


def open_dataset(path: str, job: JobConfig, is_main: bool) -> PackedDataset:
    """Open packed shards at path, or pack the corpus there once and open the result on every rank.

    prepare_corpus returns an existing current copy without work, so after rank 0 has packed,
    every rank calls it to learn the same path (no object broadcast, which XLA groups lack).
    """
    source = Path(path)
    if not (source / INDEX_FILE).is_file():
        data = job.training.data

        def pack() -> Path:
            return prepare_corpus(source, Path(data.tokenizer_path), job.training.seq_len,
                                  Path(job.output_dir) / "data", data.text_field, job.model.vocab_size)

        if is_main:
            pack()
        dist.barrier()
        source = pack()
    dataset = PackedDataset.open(source)
    if dataset.seq_len != job.training.seq_len:
        raise ValueError(f"{source} holds rows of {dataset.seq_len} tokens but training.seq_len is "
                         f"{job.training.seq_len}")
    return dataset
