"""Shape checks of a checkpoint against the model config: one message per mismatch, before any work."""

from __future__ import annotations

from collections.abc import Callable

from llm_launch.train.convert.layout import ModelShape
from llm_launch.train.convert.mapping import IGNORED_SUFFIXES, hf_shapes, optional_hf_keys


def hf_state_problems(shape: ModelShape, keys: list[str], shape_of: Callable[[str], tuple[int, ...]],
                      where: str) -> list[tuple[str, str]]:
    """Missing, unexpected and wrongly shaped HF tensors, as (tensor name, message) pairs."""
    expected = hf_shapes(shape)
    present = set(keys)
    out: list[tuple[str, str]] = []
    for key, want in expected.items():
        if key not in present:
            if key not in optional_hf_keys(shape):
                out.append((key, f"missing from {where}; the config expects shape {list(want)}"))
            continue
        got = tuple(shape_of(key))
        if got != want:
            out.append((key, f"has shape {list(got)} in {where} but the config expects {list(want)}; "
                        "check --config/--model matches the checkpoint"))
    for key in keys:
        if key not in expected and not key.endswith(IGNORED_SUFFIXES):
            out.append((key, f"in {where} is not a Llama/Mistral weight the config describes"))
    return out
