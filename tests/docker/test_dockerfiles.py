"""The Dockerfiles (no Docker engine here): documented DLC bases, existing sources and modules,
pins that satisfy pyproject.toml, and an image torch that is never replaced."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import tomllib
from llm_launch.launcher import PROJECT_ROOT
from packaging.requirements import Requirement

DOCKER = PROJECT_ROOT / "docker"
BASES = {
    "Dockerfile.gpu": re.compile(r"763104351884\.dkr\.ecr\.\$\{REGION\}\.amazonaws\.com/huggingface-pytorch-training:"
                                 r"2\.9\.0-transformers[\d.]+-gpu-py312-cu\d+-ubuntu[\d.]+"),
    "Dockerfile.neuron": re.compile(r"public\.ecr\.aws/neuron/pytorch-training-neuronx:"
                                    r"2\.9\.0-neuronx-py312-sdk2\.30\.0-ubuntu24\.04"),
    # No public TorchNeuron training image tag was found: Ubuntu plus the Neuron apt/pip repositories.
    "Dockerfile.neuron-native": re.compile(r"public\.ecr\.aws/docker/library/ubuntu:24\.04"),
}


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in lines]


def module_exists(module: str) -> bool:
    """llm_launch.<pkg>.<...> lives in the folder <pkg>/ (setup.py package_dir; docs/imports.md)."""
    base = PROJECT_ROOT.joinpath(*module.removeprefix("llm_launch.").split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def pyproject_requirements() -> dict[str, Requirement]:
    data = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    reqs = [Requirement(r) for r in data["project"]["dependencies"]]
    return {r.name.lower(): r for r in reqs}


@pytest.mark.parametrize("name", sorted(BASES))
def test_dockerfile(name):
    steps = instructions(DOCKER / name)
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for kind, a in steps if kind == "ARG" and "=" in a}
    froms = [a for kind, a in steps if kind == "FROM"]
    assert froms == ["${BASE_IMAGE}"] and BASES[name].fullmatch(args["BASE_IMAGE"])
    for kind, arg in steps:
        if kind == "COPY":
            *sources, _ = arg.split()
            for source in sources:
                assert (PROJECT_ROOT / source).exists(), source
        if kind == "RUN":
            for modules in re.findall(r'python -c "import ([^"]+)"', arg):
                for module in modules.split(","):
                    assert module_exists(module.strip()), module
            for req in re.findall(r"-r (\S+)", arg):
                assert (PROJECT_ROOT / req).is_file(), req
    (cmd,) = [json.loads(a) for kind, a in steps if kind == "CMD"]
    assert cmd[:2] == ["python", "-m"] and module_exists(cmd[2])


@pytest.mark.parametrize("name", ["requirements-gpu.txt", "requirements-neuron.txt", "requirements-neuron-native.txt"])
def test_pins_satisfy_pyproject_and_keep_the_image_torch(name):
    wanted = pyproject_requirements()
    lines = [ln for ln in (DOCKER / name).read_text().splitlines() if ln and not ln.startswith("#")]
    pins = [Requirement(ln) for ln in lines]
    names = {p.name.lower() for p in pins}
    assert "torch" not in names
    assert set(wanted) - {"torch"} <= names, set(wanted) - names
    for pin in pins:
        (spec,) = pin.specifier
        assert spec.operator == "==", pin
        if pin.name.lower() in wanted:
            assert wanted[pin.name.lower()].specifier.contains(spec.version), pin


def test_dockerignore_keeps_the_context_small():
    ignored = set((PROJECT_ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", "outputs"} <= ignored
    assert not ignored & {"launcher", "train", "conf", "recipes", "pyproject.toml", "README.md", "docker"}


def test_native_image_installs_torchneuron_inside_the_project_torch_range():
    """TorchNeuron (torch-neuronx 2.13.3.x / 2.14.3.x) pairs with torch 2.13 / 2.14; the XLA stack never comes along."""
    steps = instructions(DOCKER / "Dockerfile.neuron-native")
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for kind, a in steps if kind == "ARG" and "=" in a}
    torch_pin = pyproject_requirements()["torch"]
    assert torch_pin.specifier.contains(args["TORCH_VERSION"])
    assert args["TORCH_NEURONX_VERSION"].startswith(args["TORCH_VERSION"].rsplit(".", 1)[0] + ".3.")
    runs = " ".join(a for kind, a in steps if kind == "RUN")
    assert "https://pip.repos.neuron.amazonaws.com" in runs and "https://apt.repos.neuron.amazonaws.com" in runs
    assert "aws-neuronx-runtime-lib" in runs and "aws-neuronx-collectives" in runs and "--skip-kmod" in runs
    assert "torch-xla" not in runs and "neuronx-distributed" not in runs
