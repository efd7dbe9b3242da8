"""Whether hyperpodrun, the launcher a rendered HyperPodPyTorchJob's pods start, runs beside this project's torch.

The HyperPod training operator drives each pod's agent over HTTP: /start hands it rank, nnodes, master_addr and
master_port, /stop and /shutdown end its workers (hyperpod-elastic-agent 1.1.3, server/server.py and
server/api_models.py; https://docs.aws.amazon.com/sagemaker/latest/dg/sagemaker-eks-operator.html). The operator is
closed source, so the pod harness (pods.py) would need a stand-in for it; but no harness run is possible yet:
hyperpod-elastic-agent 1.1.3 (the newest release) pins torch<2.12, and under torch 2.13 hyperpodrun exits before
anything starts, because torchrun's parser has its own --shutdown-timeout, which the agent adds again
(run.py, add_additional_hyperpod_args: argparse "conflicting option string"). This test records that; when it
fails, an agent release runs under this torch, and the HyperPodPyTorchJob should go through the pod harness
(train, lose a pod, resume bit-exact) with a stand-in operator making those calls.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
import torch

pytestmark = pytest.mark.system
AGENT = "hyperpod_elastic_agent"


def test_hyperpodrun_starts_only_under_the_torch_its_agent_pins():
    if importlib.util.find_spec(AGENT) is None:
        if os.environ.get("LLM_LAUNCH_REQUIRE_POD_TOOLS") == "1":  # set by .ci/run, which installs the agent
            pytest.fail("hyperpod-elastic-agent is not installed (.ci/run installs it with --no-deps)")
        pytest.skip("hyperpod-elastic-agent is not installed: pip install --no-deps hyperpod-elastic-agent==1.1.3")
    run = subprocess.run([sys.executable, "-c", f"from {AGENT}.run import main; main()", "--help"],
                         capture_output=True, text=True, timeout=120)
    major_minor = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2])
    if major_minor >= (2, 12):
        assert run.returncode != 0 and "conflicting option string: --shutdown-timeout" in run.stderr, (
            "hyperpodrun now starts under torch " + torch.__version__ + ": run the HyperPodPyTorchJob through the "
            "pod harness (tests/launcher/container/pods.py) and drop the torch warning in launcher/clusters/eks/"
            "checks.py\n" + run.stdout[-2000:] + run.stderr[-2000:])
    else:
        assert run.returncode == 0 and "--server-port" in run.stdout, run.stderr[-2000:]
