"""The pretrained model's config.json is the truth about its architecture.

When model.pretrained_path is set, its config.json decides the family, the shapes, the rope parameters
(theta and scaling), the norms' epsilon, tied embeddings, the sliding window and the attention biases.
The recipe's model group is read against it, field by field:

* a field the group leaves unset (`???`, as conf/model/pretrained.yaml leaves them all) is filled from the file;
* a field that differs from the file is one problem naming the field, both values and the fix.

The launcher does this when it composes the job (local folders, llm_launch.launcher.compose) and when it
validates it (a SageMaker channel, read from its S3 prefix where credentials allow). A folder the launcher
cannot read is checked by the job when it starts (llm_launch.train.model.hf_config), with the same function
and the same lines. The job builds the model from the file itself (transformers' AutoConfig), so the plan's
figures, the engine, the converters and the export all describe one model. No torch import.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

CONFIG_JSON = "config.json"
FAMILY_OF_MODEL_TYPE = {"llama": "llama", "mistral": "mistral", "qwen2": "qwen2", "qwen3": "qwen3"}
"""config.json model_type -> our model.family (https://github.com/huggingface/transformers, models/<type>/)."""
DEFAULT_ROPE_THETA = 10000.0
"""transformers' rope_theta where a config.json gives none (LlamaConfig, Qwen2Config default)."""
CHECKED_FIELDS = ("family", "vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_attention_heads",
                  "num_key_value_heads", "head_dim", "max_position_embeddings", "rope_theta", "rope_scaling",
                  "rms_norm_eps", "tie_word_embeddings", "sliding_window", "attention_bias")
"""model.* fields that must agree with the pretrained config.json, in the order problems are listed."""


class PretrainedConfigError(ValueError):
    """A config.json the engine cannot build a model from; the message says why and what to do."""


def read_local_config(path: str | Path) -> dict[str, Any] | None:
    """The config.json of a local model folder, or None when there is none (validation names a missing file).

    A file that is not a JSON object raises PretrainedConfigError."""
    file = Path(path) / CONFIG_JSON
    if not file.is_file():
        return None
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PretrainedConfigError(f"{file} cannot be read as JSON ({exc}); download or export the model again") \
            from None
    if not isinstance(config, dict):
        raise PretrainedConfigError(f"{file} is not a JSON object; download or export the model again")
    return config


def rope_of(config: Mapping[str, Any]) -> tuple[float, dict[str, Any] | None]:
    """(rope_theta, rope scaling or None) of a config.json: older files give rope_theta and rope_scaling, files
    written by transformers 5 give rope_parameters {rope_type, rope_theta, ...}."""
    theta = config.get("rope_theta")
    scaling = config.get("rope_scaling")
    params = config.get("rope_parameters")
    if isinstance(params, Mapping) and "rope_type" in params:
        theta = params.get("rope_theta", theta)
        scaling = scaling or {k: v for k, v in params.items() if k != "rope_theta"}
    return float(theta if theta is not None else DEFAULT_ROPE_THETA), normal_rope_scaling(scaling)


def normal_rope_scaling(scaling: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """rope scaling with its type under rope_type (older files say type), None for plain RoPE."""
    if not scaling:
        return None
    out = {k: v for k, v in dict(scaling).items() if k != "type"}
    out.setdefault("rope_type", scaling.get("type", "default"))
    return None if out == {"rope_type": "default"} else out


def file_fields(config: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Our model.* fields as the config.json at where says them (the effective values transformers builds)."""
    model_type = config.get("model_type")
    family = FAMILY_OF_MODEL_TYPE.get(str(model_type))
    if family is None:
        raise PretrainedConfigError(f"{where} is a '{model_type}' model; llm-launch trains the families "
                                    f"{', '.join(FAMILY_OF_MODEL_TYPE)}: continue one of those")
    try:
        heads, hidden = int(config["num_attention_heads"]), int(config["hidden_size"])
        theta, scaling = rope_of(config)
        window = config.get("sliding_window")
        if family in ("qwen2", "qwen3") and not config.get("use_sliding_window", False):
            window = None  # Qwen2Config / Qwen3Config drop the window unless use_sliding_window
        return {
            "family": family,
            "vocab_size": int(config["vocab_size"]),
            "hidden_size": hidden,
            "intermediate_size": int(config["intermediate_size"]),
            "num_layers": int(config["num_hidden_layers"]),
            "num_attention_heads": heads,
            "num_key_value_heads": int(config.get("num_key_value_heads") or heads),
            "head_dim": int(config.get("head_dim") or hidden // heads),
            "max_position_embeddings": int(config["max_position_embeddings"]),
            "rope_theta": theta,
            "rope_scaling": scaling,
            "rms_norm_eps": float(config.get("rms_norm_eps", 1e-6)),
            "tie_word_embeddings": bool(config.get("tie_word_embeddings", False)),
            "sliding_window": int(window) if window is not None else None,
            "attention_bias": bool(config.get("attention_bias", False)),
        }
    except KeyError as exc:
        raise PretrainedConfigError(f"{where} has no {exc.args[0]}; download or export the model again") from None
    except (TypeError, ValueError) as exc:
        raise PretrainedConfigError(f"{where}: a field has a value of the wrong type ({exc}); download or export "
                                    "the model again") from None


def _same(ours: Any, theirs: Any) -> bool:
    if isinstance(ours, bool) or isinstance(theirs, bool):
        return ours == theirs
    if isinstance(ours, int | float) and isinstance(theirs, int | float):
        return math.isclose(ours, theirs, rel_tol=1e-9, abs_tol=0.0)
    if isinstance(ours, Mapping) and isinstance(theirs, Mapping):
        return ours.keys() == theirs.keys() and all(_same(ours[k], theirs[k]) for k in ours)
    if isinstance(ours, list | tuple) and isinstance(theirs, list | tuple):
        return len(ours) == len(theirs) and all(_same(a, b) for a, b in zip(ours, theirs, strict=True))
    return ours == theirs


def _shown(value: Any) -> str:
    """A value as a Hydra override writes it (dicts as {key:value,...}, None as null)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{_shown(v)}" for k, v in value.items()) + "}"
    return str(getattr(value, "value", value))


def _effective(field: str, fields: Mapping[str, Any]) -> Any:
    """A recipe field as the engine would build it (head_dim None is hidden_size // heads)."""
    value = fields[field]
    if field == "head_dim" and value is None:
        return int(fields["hidden_size"]) // int(fields["num_attention_heads"])
    if field == "rope_scaling":
        return normal_rope_scaling(value)
    if field == "family":
        return str(getattr(value, "value", value))
    return value


def differences(recipe: Mapping[str, Any], filed: Mapping[str, Any], where: str,
                group: str = "", overridden: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    """(model.<field>, message) for each recipe field that contradicts the file: both values and the fix.
    group names the model group the values come from; overridden, the fields set on the command line."""
    out = []
    for field in CHECKED_FIELDS:
        if field not in recipe:
            continue
        ours, theirs = _effective(field, recipe), filed[field]
        if not _same(ours, theirs):
            fix = f"set model.{field}={_shown(theirs)}, or model=pretrained to take every field from the file"
            said = f"the model group {group} says" if group else "the recipe says"
            if field in overridden:
                said, fix = "the command line says", f"drop model.{field} from the command line or set it to {_shown(theirs)}"
            out.append((f"model.{field}", f"{said} {_shown(ours)} but {where} says {_shown(theirs)}; {fix}"))
    return out


def name_of_folder(path: str) -> str:
    """A model.name for model=pretrained: the folder's name in the characters job names allow."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", Path(path.rstrip("/")).name).lstrip(".") or "pretrained"


def fill_and_check(model: Any, config: Mapping[str, Any], where: str, *, is_missing, group: str = "",
                   overridden: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    """Fill the fields of model (a DictConfig node) that is_missing(model, field) says the recipe left unset,
    then compare the others with the file. Returns the contradictions (model.<field>, message)."""
    filed = file_fields(config, where)
    for field in CHECKED_FIELDS:
        if is_missing(model, field):
            model[field] = filed[field]
    recipe = {field: model[field] for field in CHECKED_FIELDS}
    return differences(recipe, filed, where, group, overridden)


def channel_config(path: str, channels: Mapping[str, str], region: str) -> tuple[dict[str, Any] | None, str]:
    """(config.json, where) of a SageMaker channel path (/opt/ml/input/data/<channel>/...) read from the channel's
    S3 prefix through boto3; (None, why) when it cannot be read from here."""
    from llm_launch.launcher.clusters.sagemaker.paths import DATA_ROOT, data_channel_of

    channel = data_channel_of(path)
    prefix = channels.get(channel) if channel else None
    if not prefix:
        return None, f"{path} is not in a SageMaker channel this job sends"
    rest = path[len(f"{DATA_ROOT}/{channel}"):].strip("/")
    uri = "/".join(part for part in (prefix.rstrip("/"), rest, CONFIG_JSON) if part)
    from llm_launch.launcher.data_store import StoreError, open_store

    try:
        store = open_store(uri, region, plan_time=True)
        if not store.is_file():
            return None, f"{uri} does not exist"
        with store.open("") as handle:
            config = json.loads(handle.read().decode("utf-8"))
    except StoreError as exc:
        return None, str(exc)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"{uri} cannot be read from here ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
    if not isinstance(config, dict):
        raise PretrainedConfigError(f"{uri} is not a JSON object; upload the model again")
    return config, uri
