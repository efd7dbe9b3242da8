"""The tiny random GQA Llama saved once per session as a Hugging Face folder."""

from __future__ import annotations

import pytest
from convert_helpers import tiny_model


@pytest.fixture(scope="session")
def tiny_hf(tmp_path_factory):
    """(folder, model): the tiny model saved with save_pretrained as one model.safetensors."""
    folder = tmp_path_factory.mktemp("hf") / "tiny"
    model = tiny_model()
    model.save_pretrained(folder, safe_serialization=True)
    return folder, model
