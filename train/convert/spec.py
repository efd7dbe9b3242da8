"""Where a conversion takes the model's dimensions and layout from: a HF config.json, a
conf/model group (--model llama3_8b) or a job's job.yaml (--job), and what config.json an
output Hugging Face folder gets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llm_launch.launcher import PROJECT_ROOT
from llm_launch.launcher.config.schema import JobConfig, ModelConfig
from llm_launch.launcher.jobfile import read_job
from llm_launch.launcher.model_math import head_dim, o_bias, qk_norm, qkv_bias
from llm_launch.launcher.nxd_layout import ShardLayout, layout_of_job
from llm_launch.launcher.pretrained_config import PretrainedConfigError, file_fields
from llm_launch.train.convert.layout import ModelShape
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

MODEL_GROUP_DIR = PROJECT_ROOT / "conf" / "model"
CONFIG_JSON = "config.json"


class SpecError(Exception):
    """The model or layout source cannot be read; the message names it and the fix."""


def shape_of_model(model: ModelConfig) -> ModelShape:
    """Dimensions of one of our model specs."""
    return ModelShape(model.vocab_size, model.hidden_size, model.intermediate_size, model.num_layers,
                      model.num_attention_heads, model.num_key_value_heads, head_dim(model),
                      model.tie_word_embeddings, qkv_bias=qkv_bias(model), o_bias=o_bias(model),
                      qk_norm=qk_norm(model))


def shape_of_hf_config(config: dict[str, Any]) -> ModelShape:
    """Dimensions from a Hugging Face config.json (Llama, Mistral, Qwen2 and Qwen3), read as the launcher reads it
    (llm_launch.launcher.pretrained_config)."""
    try:
        model = ModelConfig(name="config.json", **file_fields(config, "config.json"))
    except PretrainedConfigError as exc:
        raise SpecError(str(exc)) from None
    return shape_of_model(model)


def read_hf_config(path: Path) -> dict[str, Any]:
    """A config.json (or the config.json of a folder) as a dict."""
    file = path / CONFIG_JSON if path.is_dir() else path
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except OSError:
        raise SpecError(f"{file} cannot be read; pass --config <config.json> or --model <name>") from None
    except ValueError as exc:
        raise SpecError(f"{file} is not JSON: {exc}") from None


def model_group(name: str) -> ModelConfig:
    """conf/model/<name>.yaml typed as our ModelConfig."""
    path = MODEL_GROUP_DIR / f"{name}.yaml"
    if not path.is_file():
        names = ", ".join(sorted(p.stem for p in MODEL_GROUP_DIR.glob("*.yaml")))
        raise SpecError(f"--model {name}: no conf/model/{name}.yaml; use one of {names}")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(path))
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        raise SpecError(f"conf/model/{name}.yaml: {exc}") from None


def job_model_and_layout(path: Path) -> tuple[ModelConfig, ShardLayout]:
    """The model and NxD layout of a job.yaml (tp, pp, virtual_pp, kv_replicator, hw, fused qkv)."""
    try:
        job: JobConfig = read_job(path)
    except (OSError, OmegaConfBaseException) as exc:
        raise SpecError(f"--job {path}: {exc}") from None
    return job.model, layout_of_job(job)


def hf_config_dict(model: ModelConfig) -> dict[str, Any]:
    """The config.json an output folder gets: the pretrained source's own (a job whose model.pretrained_path is
    readable here), else the one transformers writes for the model spec."""
    import dataclasses

    from llm_launch.launcher.pretrained_config import read_local_config
    from llm_launch.train.errors import JobError
    from llm_launch.train.model import hf_config, pretrained_config_json

    try:
        if model.pretrained_path and read_local_config(model.pretrained_path) is not None:
            return pretrained_config_json(model)
    except (JobError, PretrainedConfigError) as exc:
        raise SpecError(str(exc)) from None
    # no source readable here (a SageMaker channel path, or none): the config of the spec itself
    return hf_config(dataclasses.replace(model, pretrained_path=None)).to_dict()
