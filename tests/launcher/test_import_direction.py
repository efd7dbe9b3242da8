"""Imports run one way: the launcher (torch-free, on the user's laptop) is the foundation that the job packages
build on, and never imports them; training never imports data preparation (which builds on training's packed
shards). Checked on the source of every module (AST: top-level and function-level imports, relative imports
resolved, and importlib.import_module / __import__ of a literal name)."""

from __future__ import annotations

import ast
from pathlib import Path

import llm_launch.dataprep
import llm_launch.launcher
import llm_launch.train
import pytest

PACKAGES = {"launcher": llm_launch.launcher, "train": llm_launch.train, "dataprep": llm_launch.dataprep}
FORBIDDEN = {"launcher": ("llm_launch.train", "llm_launch.dataprep"), "train": ("llm_launch.dataprep",)}


def imported_names(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a module's source, wherever it stands."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]  # from pkg import module
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and (getattr(node.func, "attr", None) == "import_module" or getattr(node.func, "id", None)
                   in ("import_module", "__import__"))):
            found.append((node.lineno, node.args[0].value))
    return found


def modules_of(package) -> list[tuple[Path, str]]:
    """(file, module name) of every module in a package folder, subpackages included."""
    root = Path(package.__file__).parent
    out = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        name = ".".join((package.__name__, *parts))
        out.append((path, name.removesuffix(".__init__")))
    return out


def violations(package_folder: str) -> list[str]:
    forbidden = FORBIDDEN[package_folder]
    out = []
    for path, module in modules_of(PACKAGES[package_folder]):
        for line, name in imported_names(path.read_text(encoding="utf-8"), module, path.name == "__init__.py"):
            if any(name == f or name.startswith(f"{f}.") for f in forbidden):
                out.append(f"{path}:{line}: {module} imports {name}")
    return out


def test_the_scan_sees_every_kind_of_import():
    source = '''
import llm_launch.train.cpt
from llm_launch import dataprep

def later():
    from ..train.tracking import start_trackers
    import importlib
    importlib.import_module("llm_launch.dataprep.read")
'''
    names = [name for _, name in imported_names(source, "llm_launch.launcher.example", False)]
    assert "llm_launch.train.cpt" in names
    assert "llm_launch.dataprep" in names  # from llm_launch import dataprep
    assert "llm_launch.train.tracking" in names  # relative, inside a function
    assert "llm_launch.dataprep.read" in names  # importlib, inside a function


def test_every_package_module_is_scanned():
    names = {name for _, name in modules_of(llm_launch.launcher)}
    assert {"llm_launch.launcher", "llm_launch.launcher.validate", "llm_launch.launcher.config.schema",
            "llm_launch.launcher.clusters.slurm.runner"} <= names


@pytest.mark.parametrize("package_folder", sorted(FORBIDDEN))
def test_imports_run_one_way(package_folder):
    found = violations(package_folder)
    assert not found, (f"{package_folder}/ must not import {' or '.join(FORBIDDEN[package_folder])} "
                       "(docs/imports.md):\n" + "\n".join(found))
