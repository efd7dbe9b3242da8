"""A real two-node SageMaker job on one machine: two hosts, each with its own /opt/ml (see two_hosts.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from launcher import PROJECT_ROOT
from launcher.render.remote import SAGEMAKER_PACK_DIR, remote_job

sys_path = Path(__file__).parent
import sys  # noqa: E402

sys.path.insert(0, str(sys_path))
from two_hosts import CHANNELS, HOSTS, TwoHosts, namespaces_unavailable  # noqa: E402

pytestmark = pytest.mark.skipif(namespaces_unavailable() is not None, reason=str(namespaces_unavailable()))
SAMPLE = PROJECT_ROOT / "data" / "sample"
CPT = ["recipe=tiny_llama_cpt", "cluster=sagemaker", "trainer.num_nodes=2", "instance.accelerators_per_node=1",
       "training.log_every_n_steps=1", "training.eval_every_n_steps=0", "training.eval_batches=1",
       "training.max_steps=4", "training.checkpoint.every_n_steps=2"]


def cpt_job(job_for, *overrides):
    job = remote_job(job_for(*CPT, *overrides))
    job.training.data.train_path = f"{CHANNELS['train']}/train.jsonl"
    job.training.data.valid_path = f"{CHANNELS['train']}/valid.jsonl"
    job.training.data.tokenizer_path = CHANNELS["tokenizer"]
    return job


CPT_FILES = {f"{CHANNELS['train']}/train.jsonl": SAMPLE / "corpus" / "train.jsonl",
             f"{CHANNELS['train']}/valid.jsonl": SAMPLE / "corpus" / "valid.jsonl",
             CHANNELS["tokenizer"]: SAMPLE / "tokenizer"}


def test_cpt_from_jsonl_on_two_private_hosts(job_for, tmp_path):
    hosts = TwoHosts(tmp_path)
    codes = hosts.run(cpt_job(job_for), CPT_FILES)
    assert codes == {"algo-1": 0, "algo-2": 0}, hosts.logs()
    for name in HOSTS:
        packed = list(hosts.path(name, SAGEMAKER_PACK_DIR).glob("train-seq256-*/index.json"))
        assert len(packed) == 1, name
        assert not (hosts.path(name, "/opt/ml/model") / "data").exists()
    done = json.loads((hosts.path("algo-1", "/opt/ml/model") / "COMPLETE").read_text())
    assert done["step"] == 4
