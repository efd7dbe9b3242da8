"""Rendered EKS jobs run as their controllers run them: two pods x two CPU ranks through the pod harness (pods.py).

Each topology trains the tiny Llama with checkpoints on the PVC folder; one pod is killed (SIGKILL) once the
first checkpoint is complete, restarted as restartPolicy OnFailure does, and the job must end bit for bit where an
uninterrupted run of the same job ends (losses after the resume and the exported weights on the PVC).
The job runs tensor parallel 2 inside each pod and data parallel 2 across the pods: every reduction then sums two
ranks, which is exact in any order. (Plain DDP over all four ranks is not bit-exact across a resume: DDP rebuilds
its gradient buckets after the first step of each run, which moves where gloo's ring splits the buffer and so the
order in which four ranks' gradients are added, a difference in the last bit.)

Time: every job of the file runs at once (the `runs` fixture; each on its own bridge and subnet), since much of a
run is waiting: kubelet's 10 s back-off, rendezvous, imports. Measured on the 2-core development machine shared
with five other sessions: the seven jobs (the reference, four topologies with a lost pod, two smoke runs) took
248 s and 246 s for the whole file (load average 9 to 32 during the runs, most of it these jobs' own ~30 processes;
CPU-bound there: 4.5 CPU-minutes in 4.1 minutes). One after the other they took about 5.5 minutes in CI before the
etcd topology was added, and the elastic c10d run alone waited out a 60 s store timeout that the rendered
TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 now avoids (147 s -> 77 s alone on this machine, load 2 to 5).
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from llm_launch.launcher.clusters import cluster_of
from llm_launch.launcher.clusters.eks.render import manifests
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
import pod_jobs  # noqa: E402
from composed_job import compose_job  # noqa: E402  (tests/ is on sys.path through its conftest)
from pod_jobs import SAMPLE, losses, on_volume, shared_volume, tiny_job  # noqa: E402
from pods import S3_REGION, Cluster, etcd_unavailable, pods_unavailable  # noqa: E402

pytestmark = [pytest.mark.system,
              pytest.mark.skipif(pods_unavailable() is not None, reason=str(pods_unavailable()))]
S3_TOKENIZER = "s3://llm-launch-inputs/tokenizers/tiny"
STEPS = 4
TINY = [*tiny_job(STEPS, checkpoint_every=2), "trainer.num_nodes=2"]
TOPOLOGIES = {
    "pytorchjob_static": (),
    "pytorchjob_elastic_c10d": ("cluster.eks.elastic=true",),
    "pytorchjob_elastic_etcd": ("cluster.eks.elastic=true", "cluster.eks.rdzv_backend=etcd"),
    "trainjob": ("cluster.eks.job_kind=trainjob", f"training.data.tokenizer_path={S3_TOKENIZER}",
                 f"cluster.region={S3_REGION}"),
}
"""The TrainJob also reads its tokenizer from S3 (the harness's S3 stand-in): its pods copy it at start
(train/s3_folders.py) with the credentials the pod has."""
SMOKE_OPERATORS = ("1.9", "1.6")
REQUIRE_POD_TOOLS = "LLM_LAUNCH_REQUIRE_POD_TOOLS"
"""Set to 1 by .ci/run (which installs etcd-server): a missing etcd then fails the etcd topology instead of skipping."""


def _needs(topology: str) -> None:
    """Skip (or under LLM_LAUNCH_REQUIRE_POD_TOOLS=1, fail) a topology whose outside programs are missing."""
    reason = etcd_unavailable() if "etcd" in topology else None
    if reason and os.environ.get(REQUIRE_POD_TOOLS) == "1":
        pytest.fail(f"{topology} needs etcd ({REQUIRE_POD_TOOLS}=1) but {reason}")
    if reason:
        pytest.skip(f"{topology}: {reason}")


def rendered(tmp_path: Path, *overrides: str) -> tuple[list[dict], str]:
    """The tiny job with these overrides in place of its own."""
    keys = {o.split("=", 1)[0] for o in overrides}
    return pod_jobs.rendered(tmp_path, [*(o for o in TINY if o.split("=", 1)[0] not in keys), *overrides])


@dataclass
class Run:
    """What one job left: each pod's exit codes, the pods' logs and its output folder on the PVC."""

    codes: dict[str, list[int]]
    logs: str
    out: Path
    pods: Path
    """The harness's folder of the job (every pod's whole log)."""
    victim: str | None = None


def _train(root: Path, index: int, job: tuple[list[dict], str], interrupt: bool) -> Run:
    """One rendered tiny-Llama job through the harness; interrupt: SIGKILL its last pod once step 2's checkpoint is
    complete."""
    docs, output_dir = job
    pvc = shared_volume(root / "pvc")
    out = on_volume(pvc, output_dir)
    config = yaml.safe_load(next(d for d in docs if d["kind"] == "ConfigMap")["data"]["job.yaml"])
    s3_seed = {S3_TOKENIZER: SAMPLE / "tokenizer"} if config["training"]["data"]["tokenizer_path"] == S3_TOKENIZER \
        else None
    with Cluster(root / "pods", docs, pvc, index=index, s3_seed=s3_seed) as cluster:
        victim = cluster.pods[-1] if interrupt else None
        if victim:
            cluster.wait(timeout=420, until=lambda: (out / "checkpoints" / "step_00000002").is_dir())
            cluster.kill(victim)
        codes = cluster.wait(timeout=420)
        return Run(codes, cluster.logs(), out, root / "pods", victim.name if victim else None)


def _smoke_job(root: Path) -> list[dict]:
    job = compose_job(["recipe=smoke_allreduce", "cluster=eks", "instance=cpu", "trainer.num_nodes=2",
                       "cluster.image=local/llm-launch:test", "action=render"], root / "out")
    remote = cluster_of(job).container_job(job)
    return list(yaml.safe_load_all(yaml.safe_dump_all(manifests(remote))))


def _smoke(root: Path, index: int, docs: list[dict], operator_version: str) -> Run:
    pvc = root / "pvc"
    pvc.mkdir(parents=True)
    with Cluster(root / "pods", docs, pvc, operator_version=operator_version, index=index) as cluster:
        return Run(cluster.wait(timeout=420), cluster.logs(), pvc, root / "pods")


JOB_GIB = 2.5
"""Memory one job takes at most: four ranks of the tiny Llama (about 0.45 GiB each) and two launchers."""


def _jobs_that_fit() -> int:
    """How many jobs run at once: as many as the available memory holds (at least one)."""
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    available_gib = int(meminfo["MemAvailable"].split()[0]) / 2**20
    return max(1, int(available_gib // JOB_GIB))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Run | BaseException]:
    """Every job of this file at once, each on its own bridge and subnet: the uninterrupted static PyTorchJob every
    interrupted run is compared with, each topology with a pod lost, and the smoke runs. Most of a run's time is
    waiting (kubelet's back-off, rendezvous, imports), so together they take little longer than the slowest alone.
    A job whose outside programs are missing here is left out (its test skips or fails with the reason)."""
    names = ["reference", *(n for n in sorted(TOPOLOGIES) if not ("etcd" in n and etcd_unavailable())),
             *(f"smoke_{v}" for v in SMOKE_OPERATORS)]
    roots = {name: tmp_path_factory.mktemp(name) for name in names}
    jobs = {}  # rendered here, one after the other (Hydra's composition is not thread-safe); run together below
    for name in names:
        if name.startswith("smoke_"):
            docs, version = _smoke_job(roots[name]), name.removeprefix("smoke_")
            jobs[name] = lambda root, i, docs=docs, version=version: _smoke(root, i, docs, version)
        else:
            job = rendered(roots[name], *TOPOLOGIES.get(name, ()))
            jobs[name] = lambda root, i, job=job, name=name: _train(root, i, job, interrupt=name != "reference")
    with ThreadPoolExecutor(min(len(jobs), _jobs_that_fit())) as pool:
        futures = {name: pool.submit(job, roots[name], i) for i, (name, job) in enumerate(jobs.items())}
        return {name: future.exception() or future.result() for name, future in futures.items()}


def _result(runs: dict, name: str) -> Run:
    result = runs[name]
    if isinstance(result, BaseException):
        raise result
    return result


@pytest.mark.parametrize("topology", sorted(TOPOLOGIES))
def test_two_pods_train_lose_a_pod_restart_and_resume_bit_exact(topology, runs):
    _needs(topology)
    reference, run = _result(runs, "reference"), _result(runs, topology)
    assert all(c == [0] for c in reference.codes.values()), reference.logs
    codes, logs = run.codes, run.logs
    assert codes[run.victim][0] != 0 and codes[run.victim][-1] == 0, logs
    assert all(c[-1] == 0 for c in codes.values()), logs
    if f"training.data.tokenizer_path={S3_TOKENIZER}" in TOPOLOGIES[topology]:
        every_line = "".join(p.read_text(errors="replace") for p in run.pods.glob("*.log"))
        assert f"training.data.tokenizer_path: {S3_TOKENIZER} copied to /tmp/llm-launch-s3/" in every_line, logs
        exported = run.out / "hf_model" / "tokenizer.json"
        assert exported.read_bytes() == (SAMPLE / "tokenizer" / "tokenizer.json").read_bytes()
    assert losses(run.out)[STEPS] == losses(reference.out)[STEPS], logs
    weights = load_file(run.out / "hf_model" / "model.safetensors")
    ref_weights = load_file(reference.out / "hf_model" / "model.safetensors")
    assert weights.keys() == ref_weights.keys()
    assert all((weights[k] == ref_weights[k]).all() for k in weights)


@pytest.mark.parametrize("operator_version", SMOKE_OPERATORS)
def test_smoke_allreduce_runs_across_two_pods(runs, operator_version):
    """Also with the v1.6 operator's environment: no PET_* variables, only MASTER_ADDR, MASTER_PORT and RANK."""
    run = _result(runs, f"smoke_{operator_version}")
    assert all(c == [0] for c in run.codes.values()), run.logs
    assert "smoke: allreduce OK on 4 ranks (gloo)" in run.logs
