"""Checks a CreateTrainingJob request against botocore's own service model.

botocore validates required members, types and minimums client-side, but not maxima, enums or
patterns (its ParamValidator: https://github.com/boto/botocore/blob/develop/botocore/validate.py);
the real API rejects those. This walks the operation's input
shape and reports every violation. Patterns in the model are unanchored but applied as full
matches, and some use \\p{L}, so they are compiled with the `regex` package.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def _input_shape():
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    return model.operation_model("CreateTrainingJob").input_shape


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


@lru_cache(maxsize=1)
def sagemaker_regions() -> frozenset[str]:
    """Regions where botocore's endpoint data has SageMaker, in every partition (aws, aws-cn, aws-us-gov, ...)."""
    import botocore.session

    session = botocore.session.get_session()
    return frozenset(region for partition in session.get_available_partitions()
                     for region in session.get_available_regions("sagemaker", partition))


def partition_of(region: str) -> str | None:
    """The ARN partition of a region botocore knows (aws, aws-cn, ...), or None."""
    import botocore.session

    session = botocore.session.get_session()
    for partition in session.get_available_partitions():
        if region in session.get_available_regions("sagemaker", partition):
            return partition
    return None
