"""The tiny-Llama EKS job the pod-harness tests run (pods.py), and what they read back from its shared volume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml
from composed_job import compose_job
from llm_launch.launcher import PROJECT_ROOT
from llm_launch.launcher.clusters import cluster_of
from llm_launch.launcher.clusters.eks.render import manifests
from llm_launch.launcher.validate import validate

SAMPLE = PROJECT_ROOT / "data" / "sample"
MOUNT = "/fsx"
"""Where the rendered pods mount the shared volume (the harness's PVC folder)."""
CORPUS_DOCUMENTS = 30
"""Training documents copied onto the volume: enough for the tests' few steps."""


def tiny_job(steps: int, checkpoint_every: int) -> list[str]:
    """Overrides of a tiny-Llama PyTorchJob on CPU pods: tp 2 inside a pod, global batch 8, data on the volume."""
    return ["recipe=tiny_llama_cpt", "cluster=eks", "instance=cpu", "cluster.image=local/llm-launch:test",
            "cluster.eks.node_selector={kubernetes.io/os: linux}", f"training.max_steps={steps}",
            f"training.checkpoint.every_n_steps={checkpoint_every}", "training.log_every_n_steps=1",
            "training.eval_every_n_steps=0", "training.eval_batches=1", "training.schedule.warmup_steps=1",
            "training.seq_len=64", "training.global_batch_size=8", "training.micro_batch_size=2", "parallelism.tp=2",
            f"training.data.train_path={MOUNT}/data/train.jsonl", f"training.data.valid_path={MOUNT}/data/valid.jsonl",
            f"training.data.tokenizer_path={MOUNT}/data/tokenizer"]


def shared_volume(root: Path) -> Path:
    """The folder that stands in for the job's PVC, with the data the job reads."""
    data = root / "data"
    data.mkdir(parents=True)
    with (SAMPLE / "corpus" / "train.jsonl").open(encoding="utf-8") as lines:
        (data / "train.jsonl").write_text("".join(next(lines) for _ in range(CORPUS_DOCUMENTS)), encoding="utf-8")
    shutil.copy(SAMPLE / "corpus" / "valid.jsonl", data / "valid.jsonl")
    shutil.copytree(SAMPLE / "tokenizer", data / "tokenizer")
    return root


def rendered(tmp_path: Path, overrides: list[str]) -> tuple[list[dict], str]:
    """The manifest `llm-launch ... action=render` writes (it must validate), and the job's output folder in the pods."""
    job = compose_job([*overrides, "action=render"], tmp_path / "out")
    findings, _ = validate(job)
    assert not findings.problems, findings.problems
    remote = cluster_of(job).container_job(job)
    return list(yaml.safe_load_all(yaml.safe_dump_all(manifests(remote)))), remote.output_dir


def on_volume(volume: Path, output_dir: str) -> Path:
    """Where a folder the pods see under MOUNT lies in the volume's host folder."""
    return volume / Path(output_dir).relative_to(MOUNT)


def losses(out: Path) -> dict[int, float]:
    """The last loss logged for each step (a step redone after a restart overwrites its first try)."""
    records = map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
    return {r["step"]: r["loss"] for r in records if "loss" in r}
