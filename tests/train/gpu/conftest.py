"""Fixtures shared by the GPU engine's tests."""

from __future__ import annotations

import shutil

import pytest
import torch.distributed as dist
from llm_launch.launcher import PROJECT_ROOT


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    """A seeded tiny Llama saved as a Hugging Face folder with the sample tokenizer: (folder, its state dict)."""
    from llm_launch.launcher.config.schema import ModelConfig
    from llm_launch.train.model import build_model

    folder = tmp_path_factory.mktemp("base")
    model = build_model(ModelConfig(name="tiny_llama", vocab_size=2048, hidden_size=256, intermediate_size=1024,
                                    num_layers=4, num_attention_heads=8, num_key_value_heads=4,
                                    max_position_embeddings=2048), seed=5)
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(PROJECT_ROOT / "data" / "sample" / "tokenizer" / name, folder / name)
    return folder, {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture()
def single_rank_group(tmp_path):
    """A one-rank gloo process group for checkpoint code that calls torch.distributed."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()
