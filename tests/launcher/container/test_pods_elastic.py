"""An elastic PyTorchJob (trainer.min_nodes=1, trainer.num_nodes=2) loses a node for good and finishes on the one left.

Two pods x two CPU ranks (tp 2 in a pod, dp 2 across the pods, global batch 8 = micro 2 x dp 2 x 2 micro-batches)
run through the pod harness (pods.py) as the training operator runs the rendered manifest. Once a checkpoint is
complete, the second pod is killed (SIGKILL of every process in it) and never comes back, as when its node is lost.
torchrun on the first pod (--nnodes=1:2, c10d rendezvous on it) restarts its workers on the one node left; they lay
the job out from WORLD_SIZE=2 (dp 1, 4 micro-batches: the same global batch of 8), resume the newest checkpoint
(DCP re-shards it from 4 ranks to 2) and train to the end. Their losses must match, to 1e-5, a one-node job
started from a copy of the same checkpoint (a fixed trainer.num_nodes=1 job, run in the same harness).
"""

from __future__ import annotations

import re
import shutil
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from pod_jobs import MOUNT, losses, rendered, shared_volume, tiny_job  # noqa: E402
from pods import Cluster, pods_unavailable  # noqa: E402

pytestmark = [pytest.mark.system,
              pytest.mark.skipif(pods_unavailable() is not None, reason=str(pods_unavailable()))]
STEPS = 16
JOB = [*tiny_job(STEPS, checkpoint_every=4), "training.checkpoint.keep_last=100"]


def _rendered(tmp_path: Path, *overrides: str) -> tuple[list[dict], Path]:
    docs, output_dir = rendered(tmp_path, [*JOB, *overrides])
    return docs, Path(output_dir).relative_to(MOUNT)


def _wait_for(process, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while process.poll() is None:
        assert time.monotonic() < deadline, "the pod left did not finish in time"
        time.sleep(0.5)
    return process.returncode


def test_elastic_job_loses_a_node_and_finishes_on_the_one_left_with_the_same_global_batch(tmp_path):
    docs, output = _rendered(tmp_path / "elastic", "trainer.num_nodes=2", "trainer.min_nodes=1")
    (ptj,) = [d for d in docs if d["kind"] == "PyTorchJob"]
    assert (ptj["spec"]["elasticPolicy"]["minReplicas"], ptj["spec"]["elasticPolicy"]["maxReplicas"]) == (1, 2)
    pvc = shared_volume(tmp_path / "elastic" / "pvc")
    out = pvc / output
    with Cluster(tmp_path / "elastic" / "pods", docs, pvc) as cluster:
        survivor, victim = cluster.pods
        cluster.wait(timeout=300, until=lambda: (out / "checkpoints" / "step_00000004").is_dir())
        cluster.kill(victim)  # the node is gone: its pod is not started again
        code = _wait_for(survivor.process, timeout=420)
        log = (tmp_path / "elastic" / "pods" / f"{survivor.name}.log").read_text(errors="replace")
        both = cluster.logs()
    assert code == 0, log[-6000:]
    # global rank 0 (on either pod before the loss, on the survivor after it) says how it laid the job out
    assert "elastic: nodes 1 to 2, running on 2 node(s): 4 ranks, dp 2, grad accum 2" in both + log, both
    # one restart on the node left: its workers meet in a store of their own (TORCH_DISABLE_SHARE_RDZV_TCP_STORE)
    assert log.count("elastic: nodes 1 to 2, running on 1 node(s): 2 ranks, dp 1, grad accum 4") == 1, log[-6000:]
    assert "global batch 8" in log
    resumed = re.findall(r"resumed from \S*/(step_\d+) at step (\d+)", log)
    assert resumed, log[-6000:]
    checkpoint, step = resumed[-1][0], int(resumed[-1][1])
    assert 4 <= step < STEPS
    elastic = losses(out)
    assert sorted(elastic) == list(range(1, STEPS + 1))

    # The same checkpoint, resumed by a fixed one-node job that nothing interrupts.
    ref_docs, ref_output = _rendered(tmp_path / "reference", "trainer.num_nodes=1")
    assert ref_output == output
    ref_pvc = shared_volume(tmp_path / "reference" / "pvc")
    (ref_pvc / output / "checkpoints").mkdir(parents=True)
    shutil.copytree(out / "checkpoints" / checkpoint, ref_pvc / output / "checkpoints" / checkpoint)
    with Cluster(tmp_path / "reference" / "pods", ref_docs, ref_pvc) as ref_cluster:
        codes = ref_cluster.wait(timeout=420)
        ref_log = "".join(p.read_text(errors="replace") for p in (tmp_path / "reference" / "pods").glob("*.log"))
    assert all(c == [0] for c in codes.values()), ref_log
    assert f"resumed from {MOUNT}/{output}/checkpoints/{checkpoint} at step {step}" in ref_log, ref_log
    reference = losses(ref_pvc / output)
    assert sorted(reference) == list(range(step + 1, STEPS + 1))
    worst = max(abs(elastic[s] - reference[s]) for s in reference)
    print(f"elastic: resumed at step {step} on one node; max |loss difference| over steps {step + 1}..{STEPS}: "
          f"{worst:.3g}")
    assert worst <= 1e-5, {s: (elastic[s], reference[s]) for s in reference}
