"""Checkpoints are atomic: a save that dies half-way leaves the previous checkpoint intact and used."""

import pytest
import torch
import torch.distributed as dist

from train.gpu import checkpoint
from train.gpu.checkpoint import find_latest, load_checkpoint, save_checkpoint


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
