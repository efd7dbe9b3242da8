"""A hung step on a cluster ends every node with exit code 75, not torchrun's 1.

A rendered static PyTorchJob (two pods x two CPU ranks) runs through the pod harness (pods.py) with a test fault
(train/faults.py, added to the rendered container's environment here: a rendered job never sets it) that stops rank 1
at step 3. The watchdog ends every rank with 75; plain torchrun would exit 1, but the pods run it as
`python -m llm_launch.train.node_run`, which ends with the code of the rank that failed first on its own: the pod
ends with 75, which a restart policy or a job retry can act on. runPolicy.backoffLimit=0: the pods are not started
again.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from llm_launch.launcher.progress import HANG_EXIT_CODE

sys.path.insert(0, str(Path(__file__).parent))
from pod_jobs import rendered, shared_volume, tiny_job  # noqa: E402
from pods import Cluster, pods_unavailable  # noqa: E402

pytestmark = [pytest.mark.system,
              pytest.mark.skipif(pods_unavailable() is not None, reason=str(pods_unavailable()))]
TIMEOUT_S = 10


@pytest.mark.parametrize("topology", [
    (),
    # elastic (its own store each round: the watchdog's keys leave torchrun's restart count out); no restarts
    ("trainer.min_nodes=1", "trainer.max_restarts=0"),
], ids=["static", "elastic"])
def test_every_node_of_a_hung_job_exits_75(tmp_path, topology):
    docs, _ = rendered(tmp_path, [*tiny_job(6, checkpoint_every=4), "trainer.num_nodes=2", *topology,
                                  "cluster.eks.backoff_limit=0", f"training.watchdog.hang_timeout_s={TIMEOUT_S}"])
    (ptj,) = [d for d in docs if d["kind"] == "PyTorchJob"]
    for replica in ptj["spec"]["pytorchReplicaSpecs"].values():
        container = replica["template"]["spec"]["containers"][0]
        assert container["command"][-1].splitlines()[-1].startswith(
            "exec python -m llm_launch.train.node_run --nnodes=" + ("1:2 " if topology else "2 "))
        container["env"].append({"name": "LLM_LAUNCH_TEST_FAULTS", "value": "hang=1@3"})
    with Cluster(tmp_path / "pods", docs, shared_volume(tmp_path / "pvc")) as cluster:
        codes = cluster.wait(timeout=420)  # returns once a pod has failed for good
        for pod in cluster.pods:  # the other pod's ranks end on their own watchdog
            if pod.process.wait(timeout=120) is not None and not pod.ended:
                codes[pod.name] = [*codes[pod.name], pod.process.returncode]
        logs = "".join(p.read_text(errors="replace") for p in (tmp_path / "pods").glob("*.log"))
    assert "test fault: rank 1 hangs at step 3" in logs, logs[-6000:]
    assert "hang: step 3 did not finish within 10 s; ranks [1] did not arrive" in logs, logs[-6000:]
    assert codes == {name: [HANG_EXIT_CODE] for name in codes}, logs[-6000:]
