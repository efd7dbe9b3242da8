"""Rendered EKS jobs run as their controllers run them: two pods x two CPU ranks through the pod harness (pods.py).

Each topology trains the tiny Llama with checkpoints on the PVC folder; one pod is killed (SIGKILL) once the
first checkpoint is complete, restarted as restartPolicy OnFailure does, and the job must end bit for bit where an
uninterrupted run of the same job ends (losses after the resume and the exported weights on the PVC).
The job runs tensor parallel 2 inside each pod and data parallel 2 across the pods: every reduction then sums two
ranks, which is exact in any order. (Plain DDP over all four ranks is not bit-exact across a resume: DDP rebuilds
its gradient buckets after the first step of each run, which moves where gloo's ring splits the buffer and so the
order in which four ranks' gradients are added, a difference in the last bit.)
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from llm_launch.launcher import PROJECT_ROOT
from llm_launch.launcher.clusters import cluster_of
from llm_launch.launcher.clusters.eks.render import manifests
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
from composed_job import compose_job  # noqa: E402  (tests/ is on sys.path through its conftest)
from pods import Cluster, etcd_unavailable, pods_unavailable  # noqa: E402

pytestmark = [pytest.mark.system,
              pytest.mark.skipif(pods_unavailable() is not None, reason=str(pods_unavailable()))]
SAMPLE = PROJECT_ROOT / "data" / "sample"
STEPS = 4
MOUNT = "/fsx"
TINY = ["recipe=tiny_llama_cpt", "cluster=eks", "instance=cpu", "trainer.num_nodes=2", "cluster.image=local/llm-launch:test",
        "cluster.eks.node_selector={kubernetes.io/os: linux}", f"training.max_steps={STEPS}",
        "training.checkpoint.every_n_steps=2", "training.log_every_n_steps=1", "training.eval_every_n_steps=0",
        "training.eval_batches=1", "training.schedule.warmup_steps=1", "training.seq_len=64",
        "training.global_batch_size=8", "training.micro_batch_size=2", "parallelism.tp=2",
        f"training.data.train_path={MOUNT}/data/train.jsonl", f"training.data.valid_path={MOUNT}/data/valid.jsonl",
        f"training.data.tokenizer_path={MOUNT}/data/tokenizer"]
TOPOLOGIES = {
    "pytorchjob_static": (),
    "pytorchjob_elastic_c10d": ("cluster.eks.elastic=true",),
    "pytorchjob_elastic_etcd": ("cluster.eks.elastic=true", "cluster.eks.rdzv_backend=etcd"),
    "trainjob": ("cluster.eks.job_kind=trainjob",),
}
CORPUS_DOCUMENTS = 30
REQUIRE_POD_TOOLS = "LLM_LAUNCH_REQUIRE_POD_TOOLS"
"""Set to 1 by .ci/run (which installs etcd-server): a missing etcd then fails the etcd topology instead of skipping."""


def _needs(topology: str) -> None:
    """Skip (or under LLM_LAUNCH_REQUIRE_POD_TOOLS=1, fail) a topology whose outside programs are missing."""
    reason = etcd_unavailable() if "etcd" in topology else None
    if reason and os.environ.get(REQUIRE_POD_TOOLS) == "1":
        pytest.fail(f"{topology} needs etcd ({REQUIRE_POD_TOOLS}=1) but {reason}")
    if reason:
        pytest.skip(f"{topology}: {reason}")


def _pvc(root: Path) -> Path:
    """The shared volume with the data the job reads."""
    data = root / "data"
    data.mkdir(parents=True)
    with (SAMPLE / "corpus" / "train.jsonl").open(encoding="utf-8") as lines:
        (data / "train.jsonl").write_text("".join(next(lines) for _ in range(CORPUS_DOCUMENTS)), encoding="utf-8")
    shutil.copy(SAMPLE / "corpus" / "valid.jsonl", data / "valid.jsonl")
    shutil.copytree(SAMPLE / "tokenizer", data / "tokenizer")
    return root


def rendered(tmp_path: Path, *overrides: str) -> tuple[list[dict], str]:
    """The manifest `llm-launch ... action=render` writes, and the job's output folder inside the pods."""
    job = compose_job([*TINY, *overrides, "action=render"], tmp_path / "out")
    from llm_launch.launcher.validate import validate

    findings, _ = validate(job)
    assert not findings.problems, findings.problems
    remote = cluster_of(job).container_job(job)
    docs = list(yaml.safe_load_all(yaml.safe_dump_all(manifests(remote))))
    return docs, remote.output_dir


def _on_pvc(pvc: Path, output_dir: str) -> Path:
    return pvc / Path(output_dir).relative_to(MOUNT)


def losses(out: Path) -> dict[int, float]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r["loss"] for r in map(json.loads, lines) if "loss" in r}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[dict[int, float], dict]:
    """An uninterrupted static PyTorchJob: the losses and exported weights every interrupted run must match."""
    root = tmp_path_factory.mktemp("reference")
    docs, output_dir = rendered(root)
    pvc = _pvc(root / "pvc")
    with Cluster(root / "pods", docs, pvc) as cluster:
        codes = cluster.wait(timeout=300)
        assert all(c == [0] for c in codes.values()), cluster.logs()
    out = _on_pvc(pvc, output_dir)
    return losses(out), load_file(out / "hf_model" / "model.safetensors")


@pytest.mark.parametrize("topology", sorted(TOPOLOGIES))
def test_two_pods_train_lose_a_pod_restart_and_resume_bit_exact(topology, reference, tmp_path):
    _needs(topology)
    docs, output_dir = rendered(tmp_path, *TOPOLOGIES[topology])
    pvc = _pvc(tmp_path / "pvc")
    out = _on_pvc(pvc, output_dir)
    with Cluster(tmp_path / "pods", docs, pvc) as cluster:
        victim = cluster.pods[-1]
        cluster.wait(timeout=300, until=lambda: (out / "checkpoints" / "step_00000002").is_dir())
        cluster.kill(victim)
        codes = cluster.wait(timeout=300)
        logs = cluster.logs()
    assert codes[victim.name][0] != 0 and codes[victim.name][-1] == 0, logs
    assert all(c[-1] == 0 for c in codes.values()), logs
    ref_losses, ref_weights = reference
    assert losses(out)[STEPS] == ref_losses[STEPS], logs
    weights = load_file(out / "hf_model" / "model.safetensors")
    assert weights.keys() == ref_weights.keys()
    assert all((weights[k] == ref_weights[k]).all() for k in weights)


@pytest.mark.parametrize("operator_version", ["1.9", "1.6"])
def test_smoke_allreduce_runs_across_two_pods(tmp_path, operator_version):
    """Also with the v1.6 operator's environment: no PET_* variables, only MASTER_ADDR, MASTER_PORT and RANK."""
    job = compose_job(["recipe=smoke_allreduce", "cluster=eks", "instance=cpu", "trainer.num_nodes=2",
                       "cluster.image=local/llm-launch:test", "action=render"], tmp_path / "out")
    remote = cluster_of(job).container_job(job)
    docs = list(yaml.safe_load_all(yaml.safe_dump_all(manifests(remote))))
    pvc = tmp_path / "pvc"
    pvc.mkdir()
    with Cluster(tmp_path / "pods", docs, pvc, operator_version=operator_version) as cluster:
        codes = cluster.wait(timeout=300)
        logs = cluster.logs()
    assert all(c == [0] for c in codes.values()), logs
    assert "smoke: allreduce OK on 4 ranks (gloo)" in logs
