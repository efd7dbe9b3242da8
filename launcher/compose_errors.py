"""Turns Hydra and OmegaConf composition errors into Problems: one line each, no traceback."""

from __future__ import annotations

import difflib
import re

from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from llm_launch.launcher.problems import Problem
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

MOVED_KEYS = {"training.task": "task"}
"""Keys of older releases and where they live now."""
COMPOSITION_ERRORS = (ConfigCompositionException, MissingConfigException, OverrideParseException,
                      OmegaConfBaseException)


def _close_keys(full_key: str, schema_cfg) -> str:
    parent, _, leaf = full_key.rpartition(".")
    try:
        node = OmegaConf.select(schema_cfg, parent) if parent else schema_cfg
        keys = list(node.keys()) if node is not None else []
    except Exception:  # noqa: BLE001 - a hint is optional
        keys = []
    close = difflib.get_close_matches(leaf, [str(k) for k in keys], n=1)
    return f"; did you mean '{parent + '.' if parent else ''}{close[0]}'?" if close else ""


def _close_option(name: str, options: list[str]) -> str | None:
    """The option of a config group a mistyped name most likely means: one that contains it whole (the EC2
    instance name p5.48xlarge for the SageMaker ml.p5.48xlarge), else the closest spelling (difflib)."""
    if not name:
        return None
    containing = [o for o in options if o.endswith(name) or o.startswith(name)]
    if len(containing) == 1:
        return containing[0]
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.75)
    return close[0] if close else None


def _first_line(text: str) -> str:
    return " ".join(text.strip().splitlines()[0].split()) if text.strip() else text


def problem_from_exception(exc: BaseException, schema_cfg=None, override: str | None = None) -> Problem:
    """Describe one composition failure as the field it concerns and what would fix it."""
    if isinstance(exc, MissingConfigException):
        group = (exc.missing_cfg_file or "").rpartition("/")[0] or "config"
        name = (exc.missing_cfg_file or "").rpartition("/")[2]
        options = ", ".join(exc.options or [])
        fix = f"choose one of: {options}" if options else "check the config group name"
        close = _close_option(name, exc.options or [])
        if close:
            fix = f"did you mean {group}={close}? Or {fix}"
        return Problem(override or group, f"no option '{name}' in group '{group}'; {fix}")
    if isinstance(exc, OverrideParseException):
        return Problem(override or "override", f"cannot parse override: {_first_line(str(exc))}")
    cause = exc.__cause__ if isinstance(exc.__cause__, OmegaConfBaseException) else exc
    full_key = getattr(cause, "full_key", None) or ""
    if isinstance(cause, ConfigKeyError) or "not in" in str(cause):
        key = full_key or (override or "").split("=")[0].lstrip("+~")
        if key in MOVED_KEYS:
            value = (override or "").partition("=")[2] or "<value>"
            return Problem(key, f"moved to the top level; write {MOVED_KEYS[key]}={value}")
        hint = _close_keys(key, schema_cfg) if schema_cfg is not None else ""
        return Problem(key or "config", f"no such key{hint}; see llm-launch --cfg job for the fields")
    if isinstance(cause, ValidationError):
        choice = re.match(r"Invalid value '(.*)', expected one of \[(.*)\]", str(cause))
        key = full_key or (override or "config").split("=")[0]
        if choice:
            return Problem(key, f"'{choice.group(1)}' is not one of {choice.group(2)}; set {key}=<one of those>")
        message = _first_line(str(cause))
        message = re.sub(r"\s*full_key:.*$", "", message)
        return Problem(full_key or override or "config", f"{message}; give a value of the field's type")
    message = _first_line(str(exc))
    if isinstance(exc, ConfigCompositionException) and "Could not override" in str(exc):
        match = re.search(r"Could not override '([^']+)'", str(exc))
        return Problem(match.group(1) if match else (override or "config"), message)
    return Problem(full_key or override or "config", message)
