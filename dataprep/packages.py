"""The pip packages a data-preparation job needs, checked on the machine that runs it.

llm-launch checks them at plan time only when that machine is this one (cluster=local); a job
sent to SageMaker, EKS or Slurm checks them when llm_launch.dataprep.prepare starts there (docs/clusters.md).
"""

from __future__ import annotations

import importlib.util

from llm_launch.dataprep.extract import missing_package
from llm_launch.launcher.config.schema import DataPrepConfig
from llm_launch.launcher.problems import Problem

DATA_EXTRA = "(or pip install 'llm-launch[data]')"


def missing_packages(cfg: DataPrepConfig) -> list[Problem]:
    """One problem per setting whose package is not installed in this Python."""
    problems = []
    for module, package in (("datatrove", "datatrove"), ("orjson", "orjson")):
        if importlib.util.find_spec(module) is None:
            problems.append(Problem("task", f"data preparation runs on DataTrove and needs {package}; pip install "
                                    f"{package} {DATA_EXTRA}"))
    if (cfg.output.work_dir or "").startswith("s3://") and importlib.util.find_spec("s3fs") is None:
        problems.append(Problem("data_prep.output.work_dir", "s3:// intermediates need fsspec's s3fs; pip install "
                                "s3fs, or use a shared folder"))
    for i, source in enumerate(cfg.sources):
        package = missing_package(source.format)
        if package:
            problems.append(Problem(f"data_prep.sources[{i}].format", f"reading {source.format} needs {package}; "
                                    f"pip install {package} {DATA_EXTRA}"))
    if cfg.filters.languages and importlib.util.find_spec("langdetect") is None:
        problems.append(Problem("data_prep.filters.languages", "the language filter needs langdetect; pip install "
                                f"langdetect {DATA_EXTRA}, or set languages=[]"))
    if cfg.dedup.near and importlib.util.find_spec("datasketch") is None:
        problems.append(Problem("data_prep.dedup.near", f"needs datasketch; pip install datasketch {DATA_EXTRA}, "
                                "or set data_prep.dedup.near=false"))
    return problems
