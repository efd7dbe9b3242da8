"""Checks a CreateTrainingJob request against botocore's own service model.

botocore validates required members, types and minimums client-side, but not maxima, enums or
patterns (its ParamValidator: https://github.com/boto/botocore/blob/develop/botocore/validate.py);
the real API rejects those. This walks the operation's input
shape and reports every violation. Patterns in the model are unanchored but applied as full
matches, and some use \\p{L}, so they are compiled with the `regex` package.

Loading the service model and botocore's endpoint data (megabytes of JSON) took most of a plan's time, so
what these checks read - the shapes CreateTrainingJob's input reaches and SageMaker's regions per
partition - is taken from botocore once per botocore version and kept in ~/.cache/llm-launch (XDG_CACHE_HOME);
nothing is cached when botocore may load models from elsewhere (AWS_DATA_PATH, ~/.aws/models).
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

CACHE_FORMAT = 1
OPERATION = "CreateTrainingJob"


def _cache_file() -> Path | None:
    """Where what the checks need from botocore's data is kept between runs (one file per botocore version),
    or None when botocore may read models from elsewhere (AWS_DATA_PATH, ~/.aws/models)."""
    import botocore

    if os.environ.get("AWS_DATA_PATH") or (Path.home() / ".aws" / "models").exists():
        return None
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "llm-launch"
    return root / f"sagemaker-{OPERATION}-botocore-{botocore.__version__}.json"


def _from_botocore() -> dict[str, Any]:
    """botocore's SageMaker regions per partition and the shapes CreateTrainingJob's input reaches, as plain data
    (loading the service model and the endpoint data costs most of a plan; the cache keeps this instead)."""
    import botocore
    import botocore.session

    session = botocore.session.get_session()
    regions = {p: session.get_available_regions("sagemaker", p) for p in session.get_available_partitions()}
    shapes: dict[str, dict[str, Any]] = {}
    keys: dict[int, str] = {}

    def add(shape) -> str:
        if id(shape) in keys:
            return keys[id(shape)]
        entry: dict[str, Any] = {"name": shape.name, "type": shape.type_name, "enum": list(getattr(shape, "enum", None) or []),
                                 "metadata": {k: shape.metadata[k] for k in ("min", "max", "pattern")
                                              if k in shape.metadata}}
        key = shape.name
        while key in shapes and any(shapes[key][k] != entry[k] for k in ("type", "enum", "metadata")):
            key += "'"  # a member reference that changes its shape's limits keeps its own entry
        keys[id(shape)] = key
        if key in shapes:
            return key
        shapes[key] = entry
        if shape.type_name == "structure":
            entry["required"] = list(shape.required_members)
            entry["members"] = {name: add(member) for name, member in shape.members.items()}
        elif shape.type_name == "list":
            entry["member"] = add(shape.member)
        elif shape.type_name == "map":
            entry["key"], entry["value"] = add(shape.key), add(shape.value)
        return key

    model = session.get_service_model("sagemaker")
    root = add(model.operation_model(OPERATION).input_shape)
    return {"format": CACHE_FORMAT, "botocore": botocore.__file__, "regions": regions, "shapes": shapes, "input": root}


@lru_cache(maxsize=1)
def _model() -> dict[str, Any]:
    """_from_botocore(), read from the cache file when this botocore wrote it."""
    import botocore

    cache = _cache_file()
    if cache is not None:
        try:
            data = json.loads(cache.read_text(encoding="utf-8"))
            if data.get("format") == CACHE_FORMAT and data.get("botocore") == botocore.__file__:
                return data
        except (OSError, ValueError):
            pass
    data = _from_botocore()
    if cache is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(f".{cache.name}.tmp-{os.getpid()}")
            tmp.write_text(json.dumps(data), encoding="utf-8")
            os.replace(tmp, cache)
        except OSError:
            pass  # a read-only home: checked from botocore's data every time
    return data


class _Shape:
    """One shape of the cached model, read as _walk reads botocore's Shape."""

    def __init__(self, shapes: dict[str, dict[str, Any]], key: str):
        self._shapes, self._entry = shapes, shapes[key]
        self.name, self.type_name = self._entry["name"], self._entry["type"]
        self.metadata, self.enum = self._entry["metadata"], self._entry["enum"]

    @property
    def required_members(self) -> list[str]:
        return self._entry["required"]

    @property
    def members(self) -> dict[str, _Shape]:
        return {name: _Shape(self._shapes, key) for name, key in self._entry["members"].items()}

    @property
    def member(self) -> _Shape:
        return _Shape(self._shapes, self._entry["member"])

    @property
    def key(self) -> _Shape:
        return _Shape(self._shapes, self._entry["key"])

    @property
    def value(self) -> _Shape:
        return _Shape(self._shapes, self._entry["value"])


def _input_shape() -> _Shape:
    model = _model()
    return _Shape(model["shapes"], model["input"])


@lru_cache(maxsize=256)
def _pattern(text: str):
    import regex

    return regex.compile(text)


def _check_length(shape, size: int, path: str, what: str, errors: list[str]) -> None:
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if low is not None and size < low:
        errors.append(f"{path}: {what} {size} is below the minimum {low}")
    if high is not None and size > high:
        errors.append(f"{path}: {what} {size} is above the maximum {high}")


def _walk(shape, value: Any, path: str, errors: list[str]) -> None:
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            errors.append(f"{path}: expected an object, got {type(value).__name__}")
            return
        for member in shape.required_members:
            if member not in value:
                errors.append(f"{path}.{member}: required member missing".lstrip("."))
        for key, item in value.items():
            if key not in shape.members:
                errors.append(f"{path}.{key}: not a member of {shape.name}".lstrip("."))
            else:
                _walk(shape.members[key], item, f"{path}.{key}".lstrip("."), errors)
    elif kind == "list":
        if not isinstance(value, list):
            errors.append(f"{path}: expected a list, got {type(value).__name__}")
            return
        _check_length(shape, len(value), path, "item count", errors)
        for i, item in enumerate(value):
            _walk(shape.member, item, f"{path}[{i}]", errors)
    elif kind == "map":
        if not isinstance(value, dict):
            errors.append(f"{path}: expected a map, got {type(value).__name__}")
            return
        _check_length(shape, len(value), path, "entry count", errors)
        for key, item in value.items():
            _walk(shape.key, key, f"{path} key {key!r}", errors)
            _walk(shape.value, item, f"{path}[{key!r}]", errors)
    elif kind == "string":
        if not isinstance(value, str):
            errors.append(f"{path}: expected a string, got {type(value).__name__} {value!r}")
            return
        _check_length(shape, len(value), path, "length", errors)
        if shape.enum and value not in shape.enum:
            errors.append(f"{path}: {value!r} is not one of the allowed values")
        pattern = shape.metadata.get("pattern")
        if pattern and not _pattern(pattern).fullmatch(value):
            errors.append(f"{path}: {value!r} does not match {pattern}")
    elif kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            errors.append(f"{path}: expected an integer, got {type(value).__name__} {value!r}")
            return
        _check_length(shape, value, path, "value", errors)
    elif kind == "boolean":
        if not isinstance(value, bool):
            errors.append(f"{path}: expected true or false, got {value!r}")


def request_problems(request: dict[str, Any]) -> list[tuple[str, str]]:
    """(member path, what is wrong) for every way the request breaks the CreateTrainingJob service model."""
    return [tuple(e.split(": ", 1)) if ": " in e else (e, e) for e in request_errors(request)]


def request_errors(request: dict[str, Any]) -> list[str]:
    """Every way the request breaks the CreateTrainingJob service model (empty when it is valid)."""
    errors: list[str] = []
    _walk(_input_shape(), request, "", errors)
    return errors


def sagemaker_regions() -> frozenset[str]:
    """Regions where botocore's endpoint data has SageMaker, in every partition (aws, aws-cn, aws-us-gov, ...)."""
    return frozenset(region for regions in _model()["regions"].values() for region in regions)


def partition_of(region: str) -> str | None:
    """The ARN partition of a region botocore knows (aws, aws-cn, ...), or None."""
    for partition, regions in _model()["regions"].items():
        if region in regions:
            return partition
    return None
