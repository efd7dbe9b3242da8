"""Every parallel layout trains the same model to the same losses and gradient norms as one process.

The tiny Llama runs 3 steps on the shipped corpus with the same global batch under each
layout. The neuron layouts run the torch engine through the neuron device row (Trainium 2/3 native: foreach AdamW,
synchronize before memory statistics, fixed-shape full-graph compile options) on CPU with gloo, so a regression in the
code Trainium shares fails here (llm_launch.train.devices). Tolerance: relative 1e-5 on the loss and 1e-4 on the
grad norm (fp32 on CPU; layouts differ only in the order of floating-point sums).
"""

import pytest

STEPS = ["training.max_steps=3", "training.checkpoint.every_n_steps=0", "training.micro_batch_size=2"]
LAYOUTS = {
    "fsdp2": ["parallelism=fsdp"],
    # 2 micro-batches per rank: gradient_sync=auto all-reduces once, on the last (DDP's no_sync before it)
    "ddp_synced_once_per_step": ["parallelism=ddp"],
    "tp2_sequence_parallel": ["parallelism.tp=2", "parallelism.sequence_parallel=true"],
    "pp2_1f1b": ["parallelism.pp=2", "parallelism.pp_schedule=1f1b"],
    "pp2_interleaved": ["parallelism.pp=2", "parallelism.pp_schedule=interleaved_1f1b", "parallelism.virtual_pp=2"],
    "fsdp2_x_tp2_4proc": ["trainer.nproc_per_node=4", "parallelism=fsdp", "parallelism.tp=2"],
}
NEURON_DEVICE_PATH = {
    "neuron_fsdp2": ["parallelism=fsdp"],
    "neuron_tp2_sequence_parallel": ["parallelism.tp=2", "parallelism.sequence_parallel=true"],
}


def _run(launch, records, out_dir, overrides):
    result = launch(out_dir, *STEPS, *overrides)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return records(out_dir)


@pytest.fixture(scope="module")
def single_process(tmp_path_factory, launch, records):
    return _run(launch, records, tmp_path_factory.mktemp("single"), ["trainer.nproc_per_node=1"])


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_layout_matches_single_process(layout, single_process, launch, records, tmp_path):
    curve = _run(launch, records, tmp_path, LAYOUTS[layout])
    assert sorted(curve) == [1, 2, 3]
    for step in (1, 2, 3):
        assert curve[step]["loss"] == pytest.approx(single_process[step]["loss"], rel=1e-5), (layout, step)
        assert curve[step]["grad_norm"] == pytest.approx(single_process[step]["grad_norm"], rel=1e-4), (layout, step)
    assert curve[3]["loss"] < curve[1]["loss"]


@pytest.mark.parametrize("layout", sorted(NEURON_DEVICE_PATH))
def test_neuron_device_path_matches_single_process(layout, single_process, launch, records, tmp_path, monkeypatch):
    from llm_launch.launcher.devices import NEURON_ON_CPU_ENV

    monkeypatch.setenv(NEURON_ON_CPU_ENV, "1")
    result = launch(tmp_path, *STEPS, *NEURON_DEVICE_PATH[layout])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "torch engine on neuron: device cpu, process group gloo" in result.stdout
    curve = records(tmp_path)
    for step in (1, 2, 3):
        assert curve[step]["loss"] == pytest.approx(single_process[step]["loss"], rel=1e-5), (layout, step)
        assert curve[step]["grad_norm"] == pytest.approx(single_process[step]["grad_norm"], rel=1e-4), (layout, step)
