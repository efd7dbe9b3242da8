"""Continue a tiny published-style checkpoint of every family (tests/tiny_checkpoints.py: Llama with llama3 rope
scaling and its own special tokens, Mistral with a sliding window, Qwen2.5 with q/k/v biases and tied embeddings,
Qwen3 with QK-norm) for one step at a negligible learning rate under each layout, then export it.

The exported folder must differ from the source only in its weights: config.json and generation_config.json
byte for byte (the export copies them: save_pretrained would rewrite transformers_version, torch_dtype -> dtype,
and rope_theta / rope_scaling -> rope_parameters), the tokenizer files byte for byte, and the exported model's
logits equal to the source's within 1e-4 on 512 random tokens (lr 1e-7: the weights moved, the function barely).
Multi-process torchrun runs (about 40 s each on 2 cores): system tier.
"""

from __future__ import annotations

import pytest
import torch
from tiny_checkpoints import FAMILIES, make_checkpoint

pytestmark = pytest.mark.system

LAYOUTS = {
    "ddp2": [],
    "tp2": ["parallelism.tp=2", "parallelism.sequence_parallel=true"],
    "fsdp2": ["parallelism=fsdp"],
    "pp2": ["parallelism.pp=2", "parallelism.pp_schedule=1f1b", "training.micro_batch_size=2"],
}
COPIED = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {name: make_checkpoint(name, root / name) for name in FAMILIES}


def _logits(folder, ids):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(ids).logits


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_continue_and_export_keeps_the_model(name, layout, checkpoints, tmp_path, launch):
    from safetensors.torch import load_file

    source = checkpoints[name]
    result = launch(tmp_path, "model=pretrained", f"model.pretrained_path={source}",
                    f"training.data.tokenizer_path={source}", "training.max_steps=1", "training.optimizer.lr=1e-7",
                    "training.schedule.warmup_steps=0", "training.checkpoint.every_n_steps=0", *LAYOUTS[layout])
    if layout == "pp2" and FAMILIES[name][1]["tie_word_embeddings"]:
        errors = [line for line in result.stderr.splitlines() if line.startswith("  error:")]
        assert result.returncode == 2 and len(errors) == 1 and "tied" in errors[0], result.stderr
        return
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    exported = tmp_path / "hf_model"
    for file in COPIED:
        assert (exported / file).read_bytes() == (source / file).read_bytes(), file
    before, after = load_file(source / "model.safetensors"), load_file(exported / "model.safetensors")
    assert set(after) == set(before)
    assert any(not torch.equal(before[k], after[k]) for k in before), "the export holds the source's weights unchanged"
    ids = torch.randint(0, 2048, (1, 512), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(_logits(exported, ids), _logits(source, ids), rtol=0, atol=1e-4)
