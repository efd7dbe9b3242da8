"""Opens a job's training or validation data: packed shards as they are, a raw corpus packed first.

A raw corpus is packed at job start into training.data.pack_dir (default <output_dir>/data). That
folder may be shared by every node or private to each (node-local scratch on SageMaker); which one
is found out at run time (llm_launch.train.shared_dir). Each distinct copy is packed once, by the lowest rank
that sees it, while the others wait; packing is deterministic, so every node gets the same rows.
Every rank then reports the fingerprint of what it opened and a mismatch between nodes stops the job
with one line naming them (a data channel that differs between nodes, for instance).
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from pathlib import Path

import torch.distributed as dist
from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.data_describe import InputInfo, Layout, Schema, describe, input_problems
from llm_launch.launcher.data_store import StoreError
from llm_launch.train.data.dataset_inputs import ArrowRows, pack_input, reads_in_place
from llm_launch.train.data.packed import INDEX_FILE, PackedDataError, PackedDataset
from llm_launch.train.data.prepare import prepare_corpus
from llm_launch.train.errors import JobError
from llm_launch.train.shared_dir import ranks_sharing

READ_CHUNK = 1 << 20
NODE_LOCAL_FIELDS = ("source", "tokenizer")
"""index.json fields that name local paths: left out of the fingerprint."""


def pack_root(job: JobConfig) -> Path:
    """Where a raw corpus is packed for this job."""
    return Path(job.training.data.pack_dir or Path(job.output_dir) / "data")


def describe_input(path: str, job: JobConfig) -> InputInfo | None:
    """What a data path holds when it is read through llm_launch.train.data.dataset_inputs (a save_to_disk folder,
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
    data, cache = job.training.data, pack_root(job)
    try:
        if info is not None:
            return pack_input(info, job, cache, job.cluster.region)
        if job.task == "dpo":
            from llm_launch.train.data.dpo import prepare_dpo

            return prepare_dpo(source, Path(data.tokenizer_path), job.training.seq_len, cache)
        if job.task == "sft":
            from llm_launch.train.data.sft import prepare_sft

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


def content_fingerprint(folder: Path, index: dict, *, rows: bool) -> str:
    """Hash of a packed folder: its index (less local paths) and, with rows, every shard's bytes."""
    digest = hashlib.sha256(json.dumps({k: v for k, v in index.items() if k not in NODE_LOCAL_FIELDS},
                                       sort_keys=True).encode())
    if rows:
        for shard in index["shards"]:
            for name in (shard["file"], shard.get("mask_file")):
                if name:
                    with (folder / name).open("rb") as data:
                        while chunk := data.read(READ_CHUNK):
                            digest.update(chunk)
    return digest.hexdigest()[:16]


def _agree(folder: Path, fingerprint: str) -> None:
    """Every rank's fingerprint must be the same; otherwise one error naming the ranks that differ."""
    everyone: list = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, fingerprint)
    if len(set(everyone)) > 1:
        groups: dict[str, list[int]] = {}
        for rank, value in enumerate(everyone):
            groups.setdefault(value, []).append(rank)
        shown = "; ".join(f"ranks {ranks} read {value}" for value, ranks in groups.items())
        raise JobError(f"nodes see different data in {folder}: {shown}; give every node the same data "
                       "(S3DataDistributionType FullyReplicated on SageMaker)")


def _packed_on_every_copy(source: Path, job: JobConfig, info: InputInfo | None) -> tuple[Path, int]:
    """Pack source once per distinct copy of the pack folder (the lowest rank seeing it packs);
    returns this rank's packed folder and the number of copies."""
    sharing = ranks_sharing(pack_root(job))
    rank = dist.get_rank()
    group = _patient_group()  # made before packing: the other ranks wait in the gather, not here
    packed = str(_pack(source, job, info)) if sharing[0] == rank else None
    everyone: list = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, packed, group=group)
    return Path(everyone[sharing[0]]), sum(p is not None for p in everyone)


def open_dataset(path: str | None, job: JobConfig, is_main: bool, *,
                 object_broadcast: bool = True) -> PackedDataset | None:
    """Open packed shards, packing a raw corpus first, and check every rank opened the same rows.

    Where a group cannot exchange objects (XLA on Neuron), rank 0 packs, and after a barrier every
    rank asks the packer again: it returns the current copy without packing (one shared folder).
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
    prepacked = info is None and (source / INDEX_FILE).is_file()
    copies = 0
    if not prepacked:
        if object_broadcast:
            source, copies = _packed_on_every_copy(source, job, info)
        else:
            if is_main:
                _pack(source, job, info)
            dist.barrier()
            source = _pack(source, job, info)
    if job.task == "dpo":
        from llm_launch.train.data.dpo import PairRows, PreferenceDataset

        return PairRows(PreferenceDataset.open(source))
    try:
        dataset = PackedDataset.open(source)
    except PackedDataError as exc:
        raise JobError(str(exc)) from None
    if object_broadcast:
        fingerprint = content_fingerprint(source, dataset.index, rows=not prepacked)
        _agree(source, fingerprint)
        if copies and dist.get_rank() == 0:
            where = "one folder every node shares" if copies == 1 else f"{copies} node-local copies"
            print(f"data: {path} packed into {source.name} on {where}; fingerprint {fingerprint} on every rank",
                  flush=True)
    if dataset.seq_len != job.training.seq_len:
        raise JobError(f"{source} holds rows of {dataset.seq_len} tokens but training.seq_len is "
                       f"{job.training.seq_len}")
    return dataset


def _arrow_rows(info: InputInfo, job: JobConfig) -> ArrowRows:
    """Token rows of a save_to_disk folder, read in place."""
    from llm_launch.train.data.prepare import load_fast_tokenizer

    try:
        _, eos_id = load_fast_tokenizer(Path(job.training.data.tokenizer_path))
        return ArrowRows(info.location, seq_len=job.training.seq_len, eos_id=eos_id, vocab_size=job.model.vocab_size)
    except ValueError as exc:
        raise JobError(str(exc)) from None
