"""What defines a training job, recorded in each checkpoint, and what a resume may change.

A checkpoint resumes only into the same job: the same model (architecture, and LoRA's adapters), and unless
training.checkpoint.allow_changes names them, the same tokenizer (its tokenizer.json), training data
(a fingerprint of train_path), seq_len and global batch. The layout (world size, tp, pp, dp) may change: DCP
reshards, and the change is logged. The record is written into trainer_state.json under "job" by the GPU
backend; it is compared when a job resumes (every rank) and, for a local run, already at plan time
(launcher/clusters/local). Torch-free, so the launcher can use it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

RECORD_KEY = "job"
"""trainer_state.json key of the record."""
DESCRIPTIVE_MODEL_FIELDS = ("name", "source", "pretrained_path", "from_pretrained")
"""model.* fields that do not change the model a checkpoint holds."""
LORA_FIELDS = ("enabled", "rank", "target_modules")
"""training.lora.* fields that change which tensors a checkpoint holds."""
ALLOWABLE = {
    "tokenizer": ("training.data.tokenizer_path", "the tokenizer (tokenizer.json sha256)"),
    "data": ("training.data.train_path", "the training data (fingerprint)"),
    "seq_len": ("training.seq_len", "training.seq_len"),
    "global_batch_size": ("training.global_batch_size", "training.global_batch_size"),
}
"""allow_changes value -> (config key, how a message names it)."""
SAMPLE_BLOCK = 1 << 16
SAMPLES = 16


def _sampled_digest(path: Path) -> str:
    """sha256 of a file's size and SAMPLES evenly spaced blocks (first and last included): cheap on big files."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as data:
        for i in range(SAMPLES):
            data.seek(max(0, (size - SAMPLE_BLOCK) * i // (SAMPLES - 1)))
            digest.update(data.read(SAMPLE_BLOCK))
    return digest.hexdigest()[:16]


def data_fingerprint(path: str | None) -> str | None:
    """A fingerprint of the training data as this machine sees it, or None where it cannot be read here (s3://,
    a path of another machine): a file's sampled hash; a folder's file names and sizes, and its index.json."""
    if not path or "://" in path:
        return None
    root = Path(path)
    if root.is_file():
        return _sampled_digest(root)
    if not root.is_dir():
        return None
    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        digest.update(f"{file.relative_to(root)}\0{file.stat().st_size}\n".encode())
    index = root / "index.json"
    if index.is_file():
        fields = json.loads(index.read_text(encoding="utf-8"))
        fields = {k: v for k, v in fields.items() if k not in ("source", "tokenizer")} if isinstance(fields, dict) \
            else fields  # node-local paths are not the data
        digest.update(json.dumps(fields, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def tokenizer_hash(tokenizer_path: str | None) -> str | None:
    """sha256 of tokenizer.json (None where it is not on this machine)."""
    file = Path(tokenizer_path or "") / "tokenizer.json"
    if not tokenizer_path or "://" in tokenizer_path or not file.is_file():
        return None
    return hashlib.sha256(file.read_bytes()).hexdigest()[:16]


def model_record(job) -> dict:
    """The model a checkpoint holds: architecture fields, and the LoRA adapters."""
    record = {f"model.{k}": v for k, v in asdict(job.model).items() if k not in DESCRIPTIVE_MODEL_FIELDS}
    lora = job.training.lora
    record.update({f"training.lora.{k}": getattr(lora, k) for k in LORA_FIELDS})
    return json.loads(json.dumps(record, default=str))  # as it reads back from trainer_state.json


def job_record(job, layout: dict | None = None) -> dict:
    """What defines the job (layout: world_size, tp, pp, dp, where known)."""
    data = job.training.data
    return {"model": model_record(job), "tokenizer": tokenizer_hash(data.tokenizer_path),
            "data": data_fingerprint(data.train_path), "seq_len": job.training.seq_len,
            "global_batch_size": job.training.global_batch_size, "layout": layout or {}}


def _shown(value) -> str:
    return "unset" if value is None else json.dumps(value) if isinstance(value, list | dict) else str(value)


def compare(saved: dict, current: dict, allowed: list[str], checkpoint: str) -> tuple[list[tuple[str, str]], list[str]]:
    """(refusals as (config key, one line), notes to print) for resuming `checkpoint` (recorded `saved`) into
    the job recorded `current`.

    A model field that differs is refused, naming both values; tokenizer, data, seq_len or global batch that
    differ are refused unless allowed (then noted); a layout change is noted. Values a side could not record
    (None) and fields a record lacks (an older checkpoint) are not compared.
    """
    refusals: list[tuple[str, str]] = []
    notes: list[str] = []
    for key, value in current["model"].items():
        old = saved.get("model", {}).get(key, value)
        if old != value:
            refusals.append((key, f"{checkpoint} holds a model with {key}={_shown(old)}, this job has {_shown(value)}; "
                                  f"a checkpoint resumes only into the same model: set {key}={_shown(old)}, or "
                                  "start a new run in another output_dir (or training.checkpoint.dir)"))
    for name, (key, what) in ALLOWABLE.items():
        old, new = saved.get(name), current.get(name)
        if old is None or new is None or old == new:
            continue
        if name in allowed:
            notes.append(f"resuming {checkpoint} with {what} changed from {old} to {new} "
                         f"(training.checkpoint.allow_changes names {name})")
        else:
            refusals.append((key, f"{checkpoint} was trained with {what} {old}, this job has {new}; resuming would "
                                  "carry its step count and learning-rate schedule over to different tokens: set "
                                  f"training.checkpoint.allow_changes=[{name}] to continue anyway, or start a new run "
                                  "in another output_dir (or training.checkpoint.dir)"))
    old_layout, new_layout = saved.get("layout") or {}, current.get("layout") or {}
    if old_layout and new_layout and old_layout != new_layout:
        notes.append(f"resuming {checkpoint}, written by {_layout(old_layout)}, with {_layout(new_layout)}: "
                     "DCP reshards it")
    return refusals, notes


def _layout(layout: dict) -> str:
    return f"world size {layout.get('world_size')} (" + ", ".join(
        f"{k} {v}" for k, v in layout.items() if k != "world_size") + ")"
