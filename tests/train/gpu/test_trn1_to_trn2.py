"""Trainium 1 -> Trainium 2: an NxD checkpoint (TP 2, trn1 layout, written by hf-to-nxd as NxD's converter writes it)
goes through `llm-launch-convert nxd-to-hf` and continues in the torch engine on the neuron device's code path (on CPU
with gloo: no Neuron device here) with the same losses as the model it came from."""

from __future__ import annotations

import shutil

import pytest
import torch
from llm_launch.launcher.devices import NEURON_ON_CPU_ENV
from llm_launch.train.convert.cli import main as convert_main
from safetensors.torch import load_file


def convert(*args) -> int:
    try:
        convert_main([str(a) for a in args] + ["--no-progress"])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


@pytest.mark.system  # two single-process training runs: minutes on a shared CPU
def test_nxd_checkpoint_continues_in_the_torch_engine_with_the_same_loss(base_model, tmp_path, launch, records,
                                                                          monkeypatch):
    folder, state = base_model
    nxd, hf = tmp_path / "nxd" / "step_00000100", tmp_path / "hf"
    assert convert("hf-to-nxd", "-i", folder, "-o", nxd, "--tp", 2, "--kv-replicator", 1, "--hw", "trn1") == 0
    assert convert("nxd-to-hf", "-i", nxd, "-o", hf) == 0
    restored = load_file(hf / "model.safetensors")
    assert restored.keys() == state.keys() and all(torch.equal(restored[k], v) for k, v in state.items())
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(folder / name, hf / name)

    monkeypatch.setenv(NEURON_ON_CPU_ENV, "1")
    steps = ("training.max_steps=2", "training.checkpoint.every_n_steps=0", "trainer.nproc_per_node=1")
    curves = {}
    for name, source in (("original", folder), ("converted", hf)):
        result = launch(tmp_path / name, *steps, f"model.pretrained_path={source}")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert "torch engine on neuron" in result.stdout  # the neuron device row's code path
        curves[name] = records(tmp_path / name)
    for step in (1, 2):
        assert curves["converted"][step]["loss"] == pytest.approx(curves["original"][step]["loss"], rel=1e-6)
