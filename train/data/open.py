"""Opens a job's training or validation data: packed shards as they are, a raw corpus packed first."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import torch.distributed as dist

from launcher.config.schema import JobConfig
from train.data.dataset_inputs import ArrowRows, pack_input, reads_in_place
from train.data.inputs import InputInfo, Layout, Schema, describe, input_problems
from train.data.packed import INDEX_FILE, PackedDataError, PackedDataset
from train.data.prepare import prepare_corpus
from train.data.store import StoreError
from train.errors import JobError


def describe_input(path: str, job: JobConfig) -> InputInfo | None:
    """What a data path holds when it is read through train.data.dataset_inputs (a save_to_disk folder,
    Parquet, a JSONL folder, pre-tokenized JSONL, anything on S3); None for our packed shards and for a
    local JSONL or text corpus of the task's own kind, which the packers below read line by line."""
    if not path.startswith("s3://") and (Path(path) / INDEX_FILE).is_file():
        return None
    try:
        info = describe(path, job.training.data.text_field, job.cluster.region)
    except StoreError as exc:
        raise JobError(str(exc)) from None
    if info.layout is Layout.TEXT:
        return None
    own_kind = {"sft": Schema.SFT, "dpo": Schema.PREFERENCE}.get(job.task, Schema.TEXT)
    if info.layout is Layout.JSONL and info.files == [""] and not path.startswith("s3://") \
            and info.schema is own_kind:
        return None
    return info


def _pack(source: Path, job: JobConfig, info: InputInfo | None = None) -> Path:
    """Pack a raw corpus for this job: plain text for pre-training, prompt/answer records for SFT."""
    data, cache = job.training.data, Path(job.output_dir) / "data"
    try:
        if info is not None:
            return pack_input(info, job, cache, job.cluster.region)
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
    info = describe_input(path, job)
    if info is not None:
        problems = input_problems(info, task=job.task, seq_len=job.training.seq_len,
                                  vocab_size=job.model.vocab_size, tokenizer_size=None,
                                  text_field=job.training.data.text_field)
        if problems:
            raise JobError(problems[0])
        if reads_in_place(info, job.training.seq_len):
            return _arrow_rows(info, job)
    source = Path(path)
    if info is not None or not (source / INDEX_FILE).is_file():
        if object_broadcast:
            group = _patient_group()  # made before packing: the other ranks wait in the broadcast, not here
            shared = [str(_pack(source, job, info)) if is_main else None]
            dist.broadcast_object_list(shared, src=0, group=group)
            source = Path(shared[0])
        else:
            if is_main:
                _pack(source, job, info)
            dist.barrier()
            source = _pack(source, job, info)
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


def _arrow_rows(info: InputInfo, job: JobConfig) -> ArrowRows:
    """Token rows of a save_to_disk folder, read in place."""
    from train.data.prepare import load_fast_tokenizer

    try:
        _, eos_id = load_fast_tokenizer(Path(job.training.data.tokenizer_path))
        return ArrowRows(info.location, seq_len=job.training.seq_len, eos_id=eos_id, vocab_size=job.model.vocab_size)
    except ValueError as exc:
        raise JobError(str(exc)) from None
