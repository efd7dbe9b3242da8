"""Async checkpoints (train/gpu/async_checkpoint.py) keep the synchronous save's rules: the state saved is the one
at the save call, whatever training does after it; a checkpoint counts, and `latest` moves, only once its write
is complete and recorded; keep_last prunes as before; a failed background write surfaces at the next wait."""

import pytest
import torch
from llm_launch.train.checkpoint_integrity import checkpoint_problem
from llm_launch.train.errors import JobError
from llm_launch.train.faults import FAULTS_ENV
from llm_launch.train.gpu import async_checkpoint, checkpoint
from llm_launch.train.gpu.async_checkpoint import AsyncCheckpointer
from llm_launch.train.gpu.checkpoint import find_latest, load_checkpoint, save_checkpoint


def _training_state(seed: int):
    torch.manual_seed(seed)
    model = torch.nn.Linear(64, 32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    _train(model, optimizer, scheduler)
    return model, optimizer, scheduler


def _train(model, optimizer, scheduler):
    model(torch.ones(2, 64)).sum().backward()
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()


def test_the_checkpoint_holds_the_state_at_the_save_and_counts_only_once_complete(single_rank_group, tmp_path,
                                                                                  monkeypatch):
    root = tmp_path / "ckpt"
    model, optimizer, scheduler = _training_state(0)
    save_checkpoint(root, 1, model, optimizer, scheduler, rank=0, keep_last=2)
    _train(model, optimizer, scheduler)
    at_save = {k: v.clone() for k, v in model.state_dict().items()}
    moment = optimizer.state[model.weight]["exp_avg"].clone()

    monkeypatch.setenv(FAULTS_ENV, "checkpoint_write_delay=1.5@2")  # hold the completion back
    saves = AsyncCheckpointer(torch.device("cpu"))
    saves.save(root, 2, model, optimizer, scheduler, rank=0, keep_last=2)
    assert saves.pending is not None and not saves.pending.done()
    assert (root / "latest").read_text() == "step_00000001"  # in flight: not a checkpoint yet
    assert not (root / "step_00000002").exists()
    _train(model, optimizer, scheduler)  # training goes on while it is written
    saves.wait()
    assert (root / "latest").read_text() == "step_00000002"
    assert checkpoint_problem(root / "step_00000002") is None

    fresh, fresh_opt, fresh_sched = _training_state(99)
    state = load_checkpoint(find_latest(root), fresh, fresh_opt, fresh_sched, rank=0)
    assert state["step"] == 2
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in at_save.items())
    assert torch.equal(fresh_opt.state[fresh.weight]["exp_avg"], moment)
    assert fresh_sched.state_dict()["last_epoch"] == 2  # the scheduler as it was at the save

    monkeypatch.delenv(FAULTS_ENV)
    for step in (3, 4):
        saves.save(root, step, model, optimizer, scheduler, rank=0, keep_last=2)  # waits for the one before
    saves.close()
    assert sorted(p.name for p in root.glob("step_*")) == ["step_00000003", "step_00000004"]
    assert (root / "latest").read_text() == "step_00000004"


def test_a_failed_background_write_surfaces_at_the_next_wait_and_keeps_latest(single_rank_group, tmp_path,
                                                                              monkeypatch):
    root = tmp_path / "ckpt"
    model, optimizer, scheduler = _training_state(0)
    saves = AsyncCheckpointer(torch.device("cpu"))
    saves.save(root, 1, model, optimizer, scheduler, rank=0, keep_last=2)
    saves.wait()

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "record_files", full_disk)  # fails on the checkpoint thread
    saves.save(root, 2, model, optimizer, scheduler, rank=0, keep_last=2)
    with pytest.raises(JobError, match="no space left on .* while saving step 2; the previous checkpoints are kept"):
        saves.wait()
    assert (root / "latest").read_text() == "step_00000001"
    assert not (root / "step_00000002.tmp").exists()  # the space given back
    saves.close()


def test_staging_pins_host_memory_only_for_cuda_state():
    assert async_checkpoint.staging_options(torch.device("cpu")).use_pinned_memory is False
    cuda = async_checkpoint.staging_options(torch.device("cuda", 0))
    assert cuda.use_pinned_memory and cuda.use_non_blocking_copy and not cuda.use_async_staging
