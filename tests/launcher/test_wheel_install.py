"""A built wheel works where it is installed: beside another package with top-level `train` and `launcher`
modules, run from a project folder holding its own train.py, train/ and launcher/, `llm-launch` finds its
conf/, recipes/ and sample data inside the installed llm_launch folder and the ranks run our code
(docs/imports.md).

The venv is a real one (python -m venv) with the wheel pip-installed; torch and the other dependencies come
from the running interpreter's site-packages through a .pth file, as lines of a .pth file are added to
sys.path without processing the .pth files inside them, so our own editable install there stays out."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from llm_launch.launcher import PROJECT_ROOT

pytestmark = pytest.mark.system

USER_MARK = "USER CODE RAN"
"""What every module of the user's folder and of the other package prints (and exits 3) if it is imported."""
INTRUDER = f"import sys\nprint({USER_MARK!r}, __name__, file=sys.stderr)\nsys.exit(3)\n"


def _run(cmd: list, cwd: Path, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, f"{cmd}: exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _other_wheel(dist: Path) -> Path:
    """A wheel of another distribution with its own top-level `train` and `launcher` packages, written by hand
    (the wheel format, https://packaging.python.org/en/latest/specifications/binary-distribution-format/)."""
    name, version = "other_project", "1.0"
    info = f"{name}-{version}.dist-info"
    files = {"train/__init__.py": INTRUDER, "train/smoke.py": INTRUDER, "launcher/__init__.py": INTRUDER,
             "launcher/cli.py": INTRUDER,
             f"{info}/METADATA": f"Metadata-Version: 2.1\nName: other-project\nVersion: {version}\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
             f"{info}/top_level.txt": "launcher\ntrain\n"}
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{info}/RECORD,,")
    wheel = dist / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
        archive.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return wheel


def _host_site_dirs() -> list[str]:
    """The running interpreter's site-packages folders (a worktree venv may chain to another through a .pth)."""
    return [p for p in sys.path if p.endswith(("site-packages", "dist-packages")) and Path(p).is_dir()]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv holding our wheel and the other package; its bin folder."""
    root = tmp_path_factory.mktemp("wheel")
    dist, source = root / "dist", root / "source"
    # a clean copy: setuptools' build/ folder in a checkout may hold modules deleted since
    shutil.copytree(PROJECT_ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "outputs", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache"))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, source], cwd=root)
    (ours,) = dist.glob("llm_launch-*.whl")
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", venv], cwd=root)
    (site,) = (venv / "lib").glob("python3*/site-packages")
    (site / "_host_packages.pth").write_text("\n".join(_host_site_dirs()) + "\n")
    _run([venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-deps", ours, _other_wheel(dist)], cwd=root)
    return venv / "bin"


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A user's project folder with its own train.py, train/ and launcher/."""
    folder = tmp_path_factory.mktemp("project")
    (folder / "train.py").write_text(INTRUDER)
    for package in ("train", "launcher"):
        (folder / package).mkdir()
        for module in ("__init__.py", "smoke.py", "cli.py"):
            (folder / package / module).write_text(INTRUDER)
    return folder


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSAFEPATH", "VIRTUAL_ENV")}


def test_the_wheel_carries_its_config_and_runs_from_its_own_folder(installed, project):
    where = _run([installed / "python", "-c", "import llm_launch.launcher as l; print(l.PROJECT_ROOT)"], cwd=project,
                 env=_env()).stdout.strip()
    root = Path(where)
    assert root.name == "llm_launch" and "site-packages" in root.parts, root  # not the checkout
    for shipped in ("conf/job.yaml", "recipes/smoke_allreduce.yaml", "data/sample/tokenizer/tokenizer.json",
                    "data/sample/corpus/train.jsonl"):
        assert (root / shipped).is_file(), shipped


def test_the_ranks_run_our_code_beside_a_users_train_and_launcher(installed, project):
    done = _run([installed / "llm-launch", "recipe=smoke_allreduce", "output_dir=smoke"], cwd=project, env=_env())
    assert USER_MARK not in done.stdout + done.stderr
    assert "smoke: allreduce OK on 2 ranks (gloo): sum == world size" in done.stdout
    assert json.loads((project / "smoke" / "COMPLETE").read_text())["ok"]


def test_a_plan_reads_the_installed_sample_data(installed, project):
    """The default job trains on ${project_root:}/data/sample, which the plan checks exists (it runs here)."""
    done = _run([installed / "llm-launch", "action=plan", "output_dir=plan"], cwd=project, timeout=120, env=_env())
    assert USER_MARK not in done.stdout + done.stderr
    assert json.loads((project / "plan" / "plan.json").read_text())["world_size"] >= 1
