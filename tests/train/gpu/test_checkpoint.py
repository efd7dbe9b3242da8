"""Checkpoints are atomic: a save that dies half-way leaves the previous checkpoint intact and used."""

import boto3
import pytest
import torch
import torch.distributed as dist

from train.gpu import checkpoint
from train.gpu.checkpoint import agreed_latest, find_latest, load_checkpoint, load_from, save_checkpoint
from train.gpu.checkpoint_store import open_store

REGION = "us-west-2"


@pytest.fixture()
def single_rank_group(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def _training_state(seed: int):
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    model(torch.ones(2, 4)).sum().backward()
    optimizer.step()
    return model, optimizer, scheduler


def test_a_save_killed_half_way_leaves_the_previous_checkpoint_in_use(single_rank_group, tmp_path, monkeypatch):
    root = tmp_path / "ckpt"
    model, optimizer, scheduler = _training_state(0)
    save_checkpoint(root, 1, model, optimizer, scheduler, rank=0, keep_last=2)
    saved_weight = model.weight.detach().clone()

    real_save = checkpoint.dcp.save

    def dies_half_way(state, checkpoint_id):
        real_save(state, checkpoint_id=checkpoint_id)  # shards written ...
        raise RuntimeError("node lost")  # ... but the process dies before the checkpoint is complete

    with torch.no_grad():
        model.weight.add_(1.0)
    monkeypatch.setattr(checkpoint.dcp, "save", dies_half_way)
    with pytest.raises(RuntimeError, match="node lost"):
        save_checkpoint(root, 2, model, optimizer, scheduler, rank=0, keep_last=2)
    monkeypatch.undo()

    assert (root / "step_00000002.tmp").is_dir()  # the debris of the failed save
    assert find_latest(root) == root / "step_00000001"
    fresh, fresh_opt, fresh_sched = _training_state(99)
    state = load_checkpoint(find_latest(root), fresh, fresh_opt, fresh_sched, rank=0)
    assert state["step"] == 1
    assert torch.equal(fresh.weight, saved_weight)

    save_checkpoint(root, 2, model, optimizer, scheduler, rank=0, keep_last=2)
    assert find_latest(root) == root / "step_00000002"
    assert not (root / "step_00000002.tmp").exists()


def test_keep_last_deletes_only_older_complete_checkpoints(single_rank_group, tmp_path):
    root = tmp_path / "ckpt"
    model, optimizer, scheduler = _training_state(0)
    for step in (1, 2, 3):
        save_checkpoint(root, step, model, optimizer, scheduler, rank=0, keep_last=2)
    assert sorted(p.name for p in root.glob("step_*")) == ["step_00000002", "step_00000003"]
    assert (root / "latest").read_text().strip() == "step_00000003"


def test_save_resume_and_keep_last_straight_to_s3(aws, single_rank_group):
    """s3torchconnector's DCP writer and reader against moto_server (tests/moto_endpoint.py)."""
    s3 = boto3.session.Session(region_name=REGION).client("s3")
    s3.create_bucket(Bucket="ckpt", CreateBucketConfiguration={"LocationConstraint": REGION})
    store = open_store("s3://ckpt/runs/one", REGION)
    assert agreed_latest(store) is None
    model, optimizer, scheduler = _training_state(0)
    for step in (1, 2, 3):
        with torch.no_grad():
            model.weight.add_(step)
        save_checkpoint(store, step, model, optimizer, scheduler, rank=0, keep_last=2)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="ckpt", Prefix="runs/one/")["Contents"]}
    assert "runs/one/latest" in keys
    assert {k.split("/")[2] for k in keys if k.count("/") > 2} == {"step_00000002", "step_00000003"}
    assert {"runs/one/step_00000003/.metadata", "runs/one/step_00000003/trainer_state.json",
            "runs/one/step_00000003/rng_rank0.pt"} <= keys
    assert agreed_latest(store) == "step_00000003"

    fresh, fresh_opt, fresh_sched = _training_state(99)
    state = load_from(store, "step_00000003", fresh, fresh_opt, fresh_sched, rank=0)
    assert state["step"] == 3
    assert torch.equal(fresh.weight, model.weight)
    assert fresh_opt.state_dict()["state"][0]["exp_avg"].equal(optimizer.state_dict()["state"][0]["exp_avg"])
