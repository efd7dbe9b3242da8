"""Checkpoints are atomic: a save that dies half-way leaves the previous checkpoint intact and used."""

import json
import shutil

import boto3
import pytest
import torch
from llm_launch.train.errors import JobError
from llm_launch.train.gpu import checkpoint
from llm_launch.train.gpu.checkpoint import find_latest, load_checkpoint, resume_from, save_checkpoint
from llm_launch.train.gpu.checkpoint_store import open_store

REGION = "us-west-2"


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


def _three_checkpoints(root, keep_last=3):
    model, optimizer, scheduler = _training_state(0)
    for step in (1, 2, 3):
        save_checkpoint(root, step, model, optimizer, scheduler, rank=0, keep_last=keep_last)
    return root / "step_00000001", root / "step_00000002", root / "step_00000003"


def _shard(folder):
    return next(folder.glob("*.distcp"))


def test_every_written_file_is_recorded_and_checked(single_rank_group, tmp_path):
    from llm_launch.train.checkpoint_integrity import checkpoint_problem

    _, _, third = _three_checkpoints(tmp_path)
    files = json.loads((third / "trainer_state.json").read_text())["files"]
    assert {".metadata", "rng_rank0.pt", _shard(third).name} <= set(files)
    assert checkpoint_problem(third) is None


@pytest.mark.parametrize("damage", ["truncate", "overwrite", "delete"])
def test_a_damaged_latest_falls_back_to_the_newest_intact_one_and_is_kept(single_rank_group, tmp_path, capsys, damage):
    _, second, third = _three_checkpoints(tmp_path)
    shard = _shard(third)
    data = shard.read_bytes()
    if damage == "truncate":
        shard.write_bytes(data[:-10])
    elif damage == "overwrite":
        shard.write_bytes(bytes(255 - b for b in data))
    else:
        shard.unlink()
    assert resume_from(tmp_path, is_main=True) == second
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith(f"{third} is damaged ({shard.name}: ") and line.endswith(f"resuming from {second}")
    assert third.is_dir()  # never deleted


def test_latest_naming_a_missing_folder_says_so_and_none_left_refuses(single_rank_group, tmp_path, capsys):
    first, second, third = _three_checkpoints(tmp_path)
    shutil.rmtree(third)
    assert resume_from(tmp_path, is_main=True) == second
    assert f"latest names {third.name}, which does not exist" in capsys.readouterr().out
    for folder in (first, second):
        (folder / "trainer_state.json").unlink()
    with pytest.raises(JobError, match=r"no usable checkpoint in .*: .*latest names step_00000003, which does not "
                                       r"exist.*set training.checkpoint.resume=false"):
        resume_from(tmp_path, is_main=True)


@pytest.mark.parametrize("pointer", ["relative", "absolute", "symlink"])
def test_latest_naming_a_folder_outside_the_checkpoint_folder_is_refused_in_one_line(single_rank_group, tmp_path,
                                                                                      pointer):
    """Another run's intact checkpoint: `latest` must not lead there, however it is spelled."""
    _, _, other = _three_checkpoints(tmp_path / "other_run" / "checkpoints")
    root = tmp_path / "this_run" / "checkpoints"
    _three_checkpoints(root)
    name = {"relative": "../../other_run/checkpoints/step_00000003", "absolute": str(other),
            "symlink": "step_00000009"}[pointer]
    if pointer == "symlink":
        (root / name).symlink_to(other, target_is_directory=True)
    (root / "latest").write_text(name)
    with pytest.raises(JobError) as refused:
        resume_from(root, is_main=True)
    message = str(refused.value)
    assert message == (f"{root / 'latest'} names {name!r}, which is not a checkpoint folder of {root} (a pointer out "
                       "of the checkpoint folder is never followed); write the name of one of its step_<8 digits> "
                       "folders there, or delete it to resume from the newest intact checkpoint")
    assert "\n" not in message
    with pytest.raises(JobError):
        find_latest(root)
    (root / "latest").unlink()  # without the pointer: the newest of its own, never the symlinked one
    assert resume_from(root, is_main=True) == root / "step_00000003"


def test_a_prune_killed_half_way_leaves_nothing_that_counts(single_rank_group, tmp_path, monkeypatch):
    from llm_launch.train import checkpoint_integrity
    from llm_launch.train.checkpoint_integrity import prune, resume_point

    first, second, third = _three_checkpoints(tmp_path)

    def killed_mid_delete(path, ignore_errors=False):
        for victim in sorted(path.iterdir())[::2]:  # some files gone ...
            victim.unlink()
        raise KeyboardInterrupt  # ... and the process dies

    monkeypatch.setattr(checkpoint_integrity.shutil, "rmtree", killed_mid_delete)
    with pytest.raises(KeyboardInterrupt):
        prune(tmp_path, keep_last=1)
    monkeypatch.undo()
    assert not first.exists() and not second.exists()  # out of the namespace before any file was deleted
    assert resume_point(tmp_path).folder == third
    prune(tmp_path, keep_last=1)  # the next save's prune finishes the job
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("step_")) == [third.name]


def test_a_checkpoint_pruned_half_way_by_an_older_version_is_not_complete(single_rank_group, tmp_path):
    from llm_launch.train.checkpoint_integrity import checkpoint_problem

    _, second, _ = _three_checkpoints(tmp_path)
    state = json.loads((second / "trainer_state.json").read_text())
    state.pop("files")  # written before files were recorded: the .metadata check alone decides
    (second / "trainer_state.json").write_text(json.dumps(state))
    _shard(second).unlink()  # what a kill during the old shutil.rmtree prune left: .metadata, rng, trainer_state
    assert "is missing (.metadata names it)" in checkpoint_problem(second)


def test_an_unloadable_checkpoint_ends_in_one_line(single_rank_group, tmp_path):
    _, _, third = _three_checkpoints(tmp_path)
    fresh = torch.nn.Linear(5, 3)  # another model: the checkpoint does not fit it
    optimizer = torch.optim.AdamW(fresh.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    with pytest.raises(JobError, match=f"{third} could not be loaded .*it is kept as it is") as caught:
        load_checkpoint(third, fresh, optimizer, scheduler, rank=0)
    assert "\n" not in str(caught.value)


def test_disk_full_is_recognised_in_the_errors_torch_raises(tmp_path):
    import errno

    from llm_launch.train.gpu.checkpoint import _disk_full

    zip_error = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1664 vs 1558")
    assert _disk_full(zip_error, tmp_path)
    assert not _disk_full(RuntimeError("node lost"), tmp_path)
    wrapped = RuntimeError("save failed")
    wrapped.__cause__ = OSError(errno.ENOSPC, "No space left on device")
    assert _disk_full(wrapped, tmp_path)


def _can_mount_tmpfs() -> bool:
    import os
    import subprocess

    if os.geteuid() != 0:
        return False
    return subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs root and mount namespaces (unshare -m) for a small tmpfs")
def test_a_full_disk_ends_in_one_line_and_keeps_the_previous_checkpoints(tmp_path, command):
    """A real full disk: checkpoints on a 100 MiB tmpfs that holds one tiny-Llama checkpoint (58 MiB), not two."""
    import os
    import subprocess

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    script = """
mount -t tmpfs -o size=100m tmpfs "$CKPT" || exit 90
"$@" > "$OUT/first.out" 2>&1; echo $? > "$OUT/first.rc"
ls "$CKPT" > "$OUT/after_first.ls"
"$@" > "$OUT/second.out" 2>&1; echo $? > "$OUT/second.rc"
ls "$CKPT" > "$OUT/after_second.ls"
"""
    run = command(tmp_path / "out", "training.max_steps=3", "training.checkpoint.every_n_steps=1",
                  f"training.checkpoint.dir={ckpt}")
    env = dict(os.environ, CKPT=str(ckpt), OUT=str(tmp_path))
    done = subprocess.run(["unshare", "-m", "bash", "-c", script, "bash", *run], env=env, timeout=600)
    assert done.returncode == 0
    first = (tmp_path / "first.out").read_text()
    assert (tmp_path / "first.rc").read_text().strip() == "2", first[-3000:]
    last = first.strip().splitlines()[-1]
    assert last == (f"llm-launch: no space left on {ckpt} while saving step 2; the previous checkpoints are kept "
                    "(step_00000001); free space there or set training.checkpoint.dir to a larger disk, then run "
                    "the job again to resume"), first[-3000:]
    assert first.count("no space left") == 1 and "Traceback" not in first
    assert (tmp_path / "after_first.ls").read_text().split() == ["latest", "step_00000001"]

    second = (tmp_path / "second.out").read_text()
    assert (tmp_path / "second.rc").read_text().strip() == "2", second[-3000:]
    assert second.strip().splitlines()[-1].startswith(f"llm-launch: no space left on {ckpt} for the next checkpoint: ")
    assert (tmp_path / "after_second.ls").read_text().split() == ["latest", "step_00000001"]


def test_save_resume_and_keep_last_straight_to_s3(aws, single_rank_group):
    """s3torchconnector's DCP writer and reader against moto_server (tests/moto_endpoint.py)."""
    s3 = boto3.session.Session(region_name=REGION).client("s3")
    s3.create_bucket(Bucket="ckpt", CreateBucketConfiguration={"LocationConstraint": REGION})
    store = open_store("s3://ckpt/runs/one", REGION)
    assert resume_from(store, is_main=True) is None
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
    assert resume_from(store, is_main=True) == "s3://ckpt/runs/one/step_00000003"

    fresh, fresh_opt, fresh_sched = _training_state(99)
    state = load_checkpoint("step_00000003", fresh, fresh_opt, fresh_sched, rank=0, store=store)
    assert state["step"] == 3
    assert torch.equal(fresh.weight, model.weight)
    assert fresh_opt.state_dict()["state"][0]["exp_avg"].equal(optimizer.state_dict()["state"][0]["exp_avg"])
