"""Opens a job's training or validation data: packed shards as they are, a raw corpus packed first."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import torch.distributed as dist

from launcher.config.schema import JobConfig
from train.data.packed import INDEX_FILE, PackedDataError, PackedDataset
from train.data.prepare import prepare_corpus
from train.errors import JobError


def _pack(source: Path, job: JobConfig) -> Path:
    """Pack a raw corpus for this job: plain text for pre-training, prompt/answer records for SFT."""
    data, cache = job.training.data, Path(job.output_dir) / "data"
    try:
        if job.task == "dpo":
            from train.data.dpo import prepare_dpo

            return prepare_dpo(source, Path(data.tokenizer_path), job.training.seq_len, cache)
        if job.task == "sft":
            from train.data.sft import prepare_sft

            return prepare_sft(source, Path(data.tokenizer_path), job.training.seq_len, cache, job.model.vocab_size)
        return prepare_corpus(source, Path(data.tokenizer_path), job.training.seq_len, cache, data.text_field,
                              job.model.vocab_size)
    except ValueError as exc:  # the packers' word on the corpus: a missing field, no valid record
        raise JobError(str(exc)) from None


PACKING_WAIT = timedelta(hours=24)
"""How long the other ranks wait for rank 0 to pack a corpus. The default group's collective timeout
(10 minutes on NCCL, 30 on gloo) is shorter than packing a large corpus takes."""
_patient: list = []


def _patient_group():
    """A gloo group over every rank with a long timeout, made once (every rank calls this, in the same order)."""
    if not _patient:
        _patient.append(dist.new_group(backend="gloo", timeout=PACKING_WAIT))
    return _patient[0]


def open_dataset(path: str | None, job: JobConfig, is_main: bool, *,
                 object_broadcast: bool = True) -> PackedDataset | None:
    """Open packed shards, packing a raw corpus first on rank 0 while the others wait.

    The packed copy's folder is shared by broadcasting it (gloo, nccl), or, where a group cannot
    broadcast objects (XLA on Neuron), by a barrier after which every rank asks the packer again:
    it returns the current copy without packing.
    """
    if path is None:
        return None
    source = Path(path)
    if not (source / INDEX_FILE).is_file():
        if object_broadcast:
            group = _patient_group()  # made before packing: the other ranks wait in the broadcast, not here
            shared = [str(_pack(source, job)) if is_main else None]
            dist.broadcast_object_list(shared, src=0, group=group)
            source = Path(shared[0])
        else:
            if is_main:
                _pack(source, job)
            dist.barrier()
            source = _pack(source, job)
    if job.task == "dpo":
        from train.data.dpo import PairRows, PreferenceDataset

        return PairRows(PreferenceDataset.open(source))
    try:
        dataset = PackedDataset.open(source)
    except PackedDataError as exc:
        raise JobError(str(exc)) from None
    if dataset.seq_len != job.training.seq_len:
        raise JobError(f"{source} holds rows of {dataset.seq_len} tokens but training.seq_len is "
                       f"{job.training.seq_len}")
    return dataset
