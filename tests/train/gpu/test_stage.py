"""The engine's stage forward: the Hugging Face model's computation, and document masking in packed rows."""

import torch
from llm_launch.launcher.config.schema import ModelConfig
from llm_launch.train.gpu.stage import CausalLMStage, build_stages, document_positions_and_mask
from llm_launch.train.model import build_model

TINY = ModelConfig(name="t", vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=4, num_attention_heads=4,
                   num_key_value_heads=2, max_position_embeddings=128)
EOS = 1


def _whole(model):
    return CausalLMStage(model, list(range(TINY.num_layers)), first=True, last=True)


def test_one_stage_computes_what_the_hugging_face_model_computes():
    model = build_model(TINY, seed=0).eval()
    ids = torch.randint(2, 64, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(_whole(model)(ids), model(ids).logits, rtol=1e-5, atol=1e-5)


def test_pipeline_stages_chained_equal_the_whole_model():
    model = build_model(TINY, seed=0).eval()
    ids = torch.randint(2, 64, (2, 16), generator=torch.Generator().manual_seed(1))
    stages = [build_stages(model, pp_rank=r, pp_size=2, virtual_pp=1)[0] for r in range(2)]
    assert [s.layer_ids for s in stages] == [[0, 1], [2, 3]]
    assert "model.layers.3.mlp.up_proj.weight" in dict(stages[1].named_parameters())  # Hugging Face names
    with torch.no_grad():
        torch.testing.assert_close(stages[1](stages[0](ids)), model(ids).logits, rtol=1e-5, atol=1e-5)


def test_document_positions_restart_after_each_eos():
    ids = torch.tensor([[5, 6, EOS, 7, 8, 9, EOS, 4]])
    positions, mask = document_positions_and_mask(ids, EOS)
    assert positions.tolist() == [[0, 1, 2, 0, 1, 2, 3, 0]]
    assert mask.shape == (1, 1, 8, 8)
    assert mask[0, 0, 4].tolist() == [False, False, False, True, True, False, False, False]


def test_a_masked_document_is_computed_as_if_it_were_alone():
    stage = _whole(build_model(TINY, seed=0).eval())
    first, second = [5, 6, 7, 8, EOS], [9, 10, 11, 12, 13, 14, EOS]
    packed = torch.tensor([first + second])
    with torch.no_grad():
        alone = stage(torch.tensor([second]))
        unmasked = stage(packed)[:, len(first):]
        stage.document_eos = EOS
        masked = stage(packed)[:, len(first):]
    torch.testing.assert_close(masked, alone, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(unmasked, alone, atol=1e-3)  # without masking the first document leaks in
