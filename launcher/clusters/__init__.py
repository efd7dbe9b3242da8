"""The places a job runs, one module per cluster kind, registered in one table.

Each kind (launcher/clusters/<kind>/) owns its checks, container paths, render, submit, status,
logs and stop behind the Cluster interface (base.py); nothing else branches on cluster.kind.
Adding a kind is one new module here plus its settings dataclass in launcher/config/schema.py.
"""

from __future__ import annotations

from pathlib import Path

from llm_launch.launcher.clusters.base import Cluster
from llm_launch.launcher.clusters.eks import EksCluster
from llm_launch.launcher.clusters.local import LocalCluster
from llm_launch.launcher.clusters.records import RECORDS_FILE, latest_record
from llm_launch.launcher.clusters.sagemaker import SageMakerCluster
from llm_launch.launcher.clusters.slurm import SlurmCluster
from llm_launch.launcher.config.schema import JobConfig

CLUSTERS: dict[str, Cluster] = {
    cluster.kind: cluster for cluster in (LocalCluster(), SageMakerCluster(), EksCluster(), SlurmCluster())
}
MANAGE_ACTIONS = ("status", "logs", "stop")
"""Actions on the job last submitted from an output folder."""


def cluster_of(job: JobConfig) -> Cluster:
    """The cluster kind the job runs on (cluster.kind is checked against CLUSTERS before this is called)."""
    return CLUSTERS[job.cluster.kind]


def manage(action: str, out_dir: Path) -> None:
    """status, logs or stop of the latest submission from out_dir; status of a local run (which records no
    submission) from its progress.json."""
    if action == "status" and not (out_dir / RECORDS_FILE).is_file():
        CLUSTERS["local"].status({}, out_dir)
        return
    record = latest_record(out_dir)
    getattr(CLUSTERS[record["cluster"]], action)(record, out_dir)
