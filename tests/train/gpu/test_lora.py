"""LoRA trains only the adapters: the base weights in the checkpoint are the pretrained ones, and the
export folds the trained adapters into a plain model."""


import torch


def test_lora_trains_only_the_adapters_and_exports_them_merged(base_model, tmp_path, launch):
    import torch.distributed.checkpoint as dcp
    from transformers import AutoModelForCausalLM

    folder, base = base_model
    result = launch(tmp_path, "training.max_steps=2", "training.checkpoint.every_n_steps=0", "parallelism=fsdp",
                    f"model.pretrained_path={folder}", "training.lora.enabled=true", "training.lora.rank=4",
                    "training.optimizer.weight_decay=0")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "LoRA: training" in result.stdout

    q_base = "model.layers.0.self_attn.q_proj.base_layer.weight"
    q_lora_b = "model.layers.0.self_attn.q_proj.lora_B.default.weight"
    state = {"model": {q_base: torch.empty_like(base["model.layers.0.self_attn.q_proj.weight"]),
                       q_lora_b: torch.empty(256, 4),
                       "model.embed_tokens.weight": torch.empty_like(base["model.embed_tokens.weight"])}}
    dcp.load(state, checkpoint_id=str(tmp_path / "checkpoints" / "step_00000002"), no_dist=True)
    assert torch.equal(state["model"][q_base], base["model.layers.0.self_attn.q_proj.weight"])  # frozen
    assert torch.equal(state["model"]["model.embed_tokens.weight"], base["model.embed_tokens.weight"])
    assert state["model"][q_lora_b].abs().sum() > 0  # starts at zero, so it trained

    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "hf_model").state_dict()
    assert set(exported) == set(base)  # a plain model: no adapter names left
    assert not torch.equal(exported["model.layers.0.self_attn.q_proj.weight"],
                           base["model.layers.0.self_attn.q_proj.weight"])  # adapters merged in
    assert torch.equal(exported["model.embed_tokens.weight"], base["model.embed_tokens.weight"])
