"""A real two-node SageMaker job on one machine: two hosts, each with its own /opt/ml (two_hosts.py).

Each run is `python -m llm_launch.launcher.container.sagemaker_entry` on algo-1 and algo-2 with a 2-host resource
config: two torchrun agents (--nnodes=2, one process each) training the tiny Llama from JSONL. The
uninterrupted reference runs with checkpoints, model output and pack folder on one folder both hosts
share; the others keep everything on each host's own disk, as SageMaker does, and must match it bit
for bit: the data is packed on each node, each node finalizes the checkpoint shards it holds, and the
final export needs no shard on rank 0's disk.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from llm_launch.launcher import PROJECT_ROOT
from llm_launch.launcher.clusters.sagemaker.paths import CHECKPOINT_DIR, MODEL_DIR, PACK_DIR, container_job
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
from composed_job import compose_job  # noqa: E402  (tests/ is on sys.path through its conftest)
from two_hosts import CHANNELS, HOSTS, TwoHosts, namespaces_unavailable  # noqa: E402

pytestmark = [pytest.mark.system,
              pytest.mark.skipif(namespaces_unavailable() is not None, reason=str(namespaces_unavailable()))]
SAMPLE = PROJECT_ROOT / "data" / "sample"
STEPS = 4
TWO_NODES = ["cluster=sagemaker", "trainer.num_nodes=2", "instance.accelerators_per_node=1",
             "training.log_every_n_steps=1", "training.eval_every_n_steps=0", "training.eval_batches=1",
             f"training.max_steps={STEPS}", "training.checkpoint.every_n_steps=2"]
CORPUS_DOCUMENTS = 40
"""Documents of the shipped corpus the tests train on: about 190 rows of 256 tokens, enough for 4 steps of 8
rows, and quick to pack on every node."""


def small_corpus(root: Path) -> Path:
    """The first CORPUS_DOCUMENTS documents of the sample corpus, in a file of its own."""
    path = root / "train.jsonl"
    if not path.is_file():
        with (SAMPLE / "corpus" / "train.jsonl").open(encoding="utf-8") as lines:
            path.write_text("".join(next(lines) for _ in range(CORPUS_DOCUMENTS)), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def cpt_files(tmp_path_factory) -> dict[str, Path]:
    return {f"{CHANNELS['train']}/train.jsonl": small_corpus(tmp_path_factory.mktemp("corpus")),
            f"{CHANNELS['train']}/valid.jsonl": SAMPLE / "corpus" / "valid.jsonl",
            CHANNELS["tokenizer"]: SAMPLE / "tokenizer"}
SFT_FILES = {f"{CHANNELS['train']}/train.jsonl": SAMPLE / "sft" / "train.jsonl",
             f"{CHANNELS['train']}/valid.jsonl": SAMPLE / "sft" / "valid.jsonl",
             CHANNELS["tokenizer"]: SAMPLE / "tokenizer"}


def two_node_job(tmp_path: Path, recipe: str, *overrides: str):
    """The job as SageMaker containers see it, reading the train and tokenizer channels."""
    job = container_job(compose_job([f"recipe={recipe}", *TWO_NODES, *overrides], tmp_path / "out"))
    data = job.training.data
    data.train_path, data.valid_path = f"{CHANNELS['train']}/train.jsonl", f"{CHANNELS['train']}/valid.jsonl"
    data.tokenizer_path = CHANNELS["tokenizer"]
    return job


def losses(hosts: TwoHosts) -> dict[int, float]:
    lines = (hosts.path("algo-1", MODEL_DIR) / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r["loss"] for r in map(json.loads, lines) if "loss" in r}


def exported(hosts: TwoHosts) -> dict:
    return load_file(hosts.path("algo-1", MODEL_DIR) / "hf_model" / "model.safetensors")


def assert_finished(hosts: TwoHosts, codes: dict[str, int]) -> None:
    assert codes == {"algo-1": 0, "algo-2": 0}, hosts.logs()
    assert json.loads((hosts.path("algo-1", MODEL_DIR) / "COMPLETE").read_text())["step"] == STEPS


def sync_to_s3(hosts: TwoHosts, bucket: Path) -> Path:
    """What SageMaker's checkpoint sync does: every node's checkpoint folder into one S3 prefix."""
    for name in HOSTS:
        shutil.copytree(hosts.path(name, CHECKPOINT_DIR), bucket, dirs_exist_ok=True)
    return bucket


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cpt_files):
    """The uninterrupted run, on one folder both hosts share (as on FSx for Lustre)."""
    root = tmp_path_factory.mktemp("shared")
    hosts = TwoHosts(root, shared=True)
    assert_finished(hosts, hosts.run(two_node_job(root, "tiny_llama_cpt"), cpt_files))
    return hosts


def test_on_a_shared_folder_one_copy_is_packed_and_checkpoints_hold_every_shard(reference):
    log = reference.log("algo-1")
    assert "packed into train-seq256-" in log and "on one folder every node shares" in log
    assert len(list(reference.path("algo-1", PACK_DIR).glob("train-seq256-*"))) == 1
    checkpoints = reference.path("algo-1", CHECKPOINT_DIR)
    assert (checkpoints / "latest").read_text().strip() == "step_00000004"
    assert sorted(p.name for p in checkpoints.iterdir() if not p.name.startswith(".")) == [
        "latest", "step_00000002", "step_00000004"]  # the dot files are the run's lock
    assert {p.name for p in (checkpoints / "step_00000004").glob("__*")} == {"__0_0.distcp", "__1_0.distcp"}


def test_private_hosts_killed_synced_and_resumed_match_the_uninterrupted_run(reference, cpt_files, tmp_path):
    from llm_launch.train.gpu.export import model_from_checkpoint

    job = two_node_job(tmp_path, "tiny_llama_cpt")
    first = TwoHosts(tmp_path / "first")
    first.provision(job, cpt_files)
    first.start()
    first.kill_when(lambda: all(first.path(h, CHECKPOINT_DIR).joinpath("latest").is_file() for h in HOSTS))
    assert not first.path("algo-1", MODEL_DIR).joinpath("COMPLETE").exists()
    assert "on 2 node-local copies" in first.log("algo-1")
    for name in HOSTS:  # each node packed its own copy, outside the model output, and finalized its own shards
        assert len(list(first.path(name, PACK_DIR).glob("train-seq256-*/index.json"))) == 1
        assert not (first.path(name, MODEL_DIR) / "data").exists()
        saved = first.path(name, CHECKPOINT_DIR) / "step_00000002"
        assert {p.name for p in saved.iterdir()} >= {".metadata", "trainer_state.json"}
        assert not list(first.path(name, CHECKPOINT_DIR).glob("step_00000002.tmp"))
    assert {p.name for p in (first.path("algo-2", CHECKPOINT_DIR) / "step_00000002").glob("__*")} \
        == {"__1_0.distcp"}

    bucket = sync_to_s3(first, tmp_path / "s3")
    second = TwoHosts(tmp_path / "second")  # a restart gets new instances: fresh disks, the prefix copied back
    codes = second.run(job, {**cpt_files, CHECKPOINT_DIR: bucket})
    assert_finished(second, codes)
    resumed = [line for line in second.log("algo-1").splitlines() if "resumed from" in line]
    assert resumed and int(resumed[0].rsplit(" ", 1)[1]) < STEPS, second.log("algo-1")

    reference_losses, resumed_losses = losses(reference), losses(second)
    assert set(reference_losses) == set(range(1, STEPS + 1))
    for step, loss in resumed_losses.items():
        assert loss == reference_losses[step], step  # bit for bit
    expected = exported(reference)
    assert exported(second).keys() == expected.keys()
    for key, tensor in exported(second).items():
        assert tensor.equal(expected[key]), key

    # The export is exact: it equals the final checkpoint, merged from both nodes.
    merged = sync_to_s3(second, tmp_path / "s3-final") / "step_00000004"
    from_checkpoint = model_from_checkpoint(merged, job.model).state_dict()
    for key, tensor in expected.items():
        assert tensor.equal(from_checkpoint[key]), key


def test_checkpoints_straight_to_s3_on_private_hosts(reference, cpt_files, tmp_path, aws):
    import boto3

    s3 = boto3.session.Session(region_name="us-east-1").client("s3")
    s3.create_bucket(Bucket="ckpt")
    job = two_node_job(tmp_path, "tiny_llama_cpt", "training.checkpoint.dir=s3://ckpt/run-1")
    assert job.training.checkpoint.dir == "s3://ckpt/run-1"  # the user's choice, kept
    hosts = TwoHosts(tmp_path)
    assert_finished(hosts, hosts.run(job, cpt_files, env=aws.env()))
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="ckpt", Prefix="run-1/")["Contents"]}
    assert s3.get_object(Bucket="ckpt", Key="run-1/latest")["Body"].read() == b"step_00000004"
    assert {"run-1/step_00000004/__0_0.distcp", "run-1/step_00000004/__1_0.distcp",
            "run-1/step_00000004/.metadata", "run-1/step_00000004/trainer_state.json"} <= keys
    assert not [p for p in hosts.path("algo-1", CHECKPOINT_DIR).iterdir() if p.name.startswith("step_")]
    assert losses(hosts) == losses(reference)
    expected = exported(reference)
    for key, tensor in exported(hosts).items():
        assert tensor.equal(expected[key]), key


def test_sft_with_lora_on_private_hosts(tmp_path):
    job = two_node_job(tmp_path, "tiny_llama_sft", "training.lora.enabled=true", "training.global_batch_size=2",
                       "training.micro_batch_size=1")
    hosts = TwoHosts(tmp_path)
    assert_finished(hosts, hosts.run(job, SFT_FILES))
    assert "LoRA: training" in hosts.log("algo-1")
    for name in HOSTS:
        (packed,) = hosts.path(name, PACK_DIR).glob("train-*")
        assert list(packed.glob("*.mask.bin")), name
    weights = exported(hosts)
    assert weights and not any("lora" in key for key in weights)  # adapters merged


def test_nodes_that_see_different_data_stop_with_one_line(cpt_files, tmp_path):
    hosts = TwoHosts(tmp_path)
    hosts.provision(two_node_job(tmp_path, "tiny_llama_cpt"), cpt_files)
    shutil.copy(SAMPLE / "corpus" / "valid.jsonl", hosts.path("algo-2", f"{CHANNELS['train']}/train.jsonl"))
    hosts.start()
    codes = hosts.wait()
    # the entrypoint's one line, then each host exits 2 (llm_launch.train.node_run) without torchrun's traceback
    assert codes == {"algo-1": 2, "algo-2": 2}, hosts.logs()
    assert "Traceback" not in hosts.logs() and "ChildFailedError" not in hosts.logs(), hosts.logs()
    errors = [line for h in HOSTS for line in hosts.log(h).splitlines() if "nodes see different data" in line]
    assert errors and errors[0].startswith("train.cpt: nodes see different data in "), hosts.logs()
    assert "ranks [0] read" in errors[0] and "ranks [1] read" in errors[0]
