"""LoRA adapters through peft: injected into the transformers model before it is split into stages.

Only the adapters train; the base weights are frozen. Checkpoints hold base and adapter
weights under peft's names (q_proj.base_layer.weight, q_proj.lora_A.default.weight); the
Hugging Face export merges the adapters into the base weights, so the exported folder is a
plain model that loads with from_pretrained.
"""

from __future__ import annotations

import contextlib

import torch
from llm_launch.launcher.config.schema import LoraConfig


def apply_lora(model: torch.nn.Module, lora: LoraConfig, seed: int) -> torch.nn.Module:
    """Inject adapters into model's target modules (seeded, so every rank and rerun starts alike)."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import inject_adapter_in_model

    torch.manual_seed(seed)
    config = PeftLoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                            target_modules=list(lora.target_modules))
    return inject_adapter_in_model(config, model)


def merge_lora(model: torch.nn.Module) -> torch.nn.Module:
    """Fold every adapter into its base layer and put the plain layer back in its place."""
    from peft.tuners.lora import LoraLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name), child, module.get_base_layer())
    return model


def trainable_parameter_count(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


@contextlib.contextmanager
def adapters_disabled(model: torch.nn.Module):
    """Run model as its base model: every LoRA adapter off inside the block (a preference reference)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    for layer in layers:
        layer.enable_adapters(False)
    try:
        yield
    finally:
        for layer in layers:
            layer.enable_adapters(True)
