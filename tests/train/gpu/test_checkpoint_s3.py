"""Checkpoints straight to an s3:// prefix (s3torchconnector's DCP writer and reader) against moto_server."""

import boto3
import pytest
import torch
import torch.distributed as dist

from train.gpu.checkpoint import agreed_latest, load_from, save_checkpoint
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


def test_save_resume_and_keep_last_on_s3(aws, single_rank_group):
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
