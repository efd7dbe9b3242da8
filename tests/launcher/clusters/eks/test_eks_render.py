"""EKS: every rendered PyTorchJob passes the CRD as a strict schema, the webhook rules and our own rules."""

from __future__ import annotations

import copy

import pytest
import yaml
from cluster_locations import cluster_inputs
from crd_schema import launcher_errors, pytorchjob_errors
from llm_launch.launcher.clusters.eks.render import manifests
from llm_launch.launcher.topology import topology_of

SMOKE = "recipe=smoke_allreduce"
EKS_INPUTS = cluster_inputs("eks", "sft")
"""Data, tokenizer and model on the PVC, where the pods read them."""
VARIANTS = {
    "gpu_master_worker": (SMOKE, "instance=ml.p5.48xlarge", "trainer.num_nodes=2"),
    "gpu_single_node_master_only": (SMOKE, "instance=ml.g5.12xlarge"),
    "gpu_elastic_c10d": (SMOKE, "instance=ml.p4d.24xlarge", "trainer.num_nodes=4", "cluster.eks.elastic=true"),
    "gpu_elastic_node_range": (SMOKE, "instance=ml.p4d.24xlarge", "trainer.num_nodes=4", "trainer.min_nodes=2",
                               "trainer.max_restarts=5"),
    "gpu_elastic_node_range_etcd": (SMOKE, "instance=ml.p5.48xlarge", "trainer.num_nodes=3", "trainer.min_nodes=1",
                                    "cluster.eks.rdzv_backend=etcd"),
    "gpu_elastic_etcd": (SMOKE, "instance=ml.p5en.48xlarge", "trainer.num_nodes=3", "cluster.eks.elastic=true",
                         "cluster.eks.rdzv_backend=etcd"),
    "neuron_trn1_recipe": ("recipe=llama3_8b_cpt_trn1",),
    "neuron_trn1_70b_precompile": ("recipe=llama2_70b_cpt_trn1", "neuron.precompile=true"),
    "neuron_trn2_elastic_c10d": ("recipe=llama3_8b_cpt_trn1", "instance=ml.trn2.48xlarge",
                                 "cluster.eks.elastic=true"),
    "neuron_trn1n_etcd_extras": ("recipe=llama3_8b_cpt_trn1", "instance=ml.trn1n.32xlarge", "cluster.eks.elastic=true",
                                 "cluster.eks.rdzv_backend=etcd", "cluster.eks.hf_token_secret=hf-token",
                                 "cluster.eks.service_account=trainer", "cluster.eks.shm_size=64Gi",
                                 "cluster.eks.tolerations=[{key: aws.amazon.com/neuron, operator: Exists, "
                                 "effect: NoSchedule}]"),
    "gpu_sft_no_pvc": ("recipe=llama2_7b_sft_p5_fsdp", "cluster.eks.pvc_name=null"),
}


@pytest.fixture(params=sorted(VARIANTS))
def rendered(request, job_for, render_job):
    job = job_for(*VARIANTS[request.param], "cluster=eks", *EKS_INPUTS, "action=render")
    remote, files = render_job(job)
    docs = list(yaml.safe_load_all(files[-1].read_text()))
    return request.param, remote, docs


def by_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def test_pytorchjob_is_accepted_by_the_crd_and_webhook(rendered):
    _, job, docs = rendered
    (ptj,) = by_kind(docs, "PyTorchJob")
    assert pytorchjob_errors(ptj) == []
    assert launcher_errors(ptj, job.instance, topology_of(job).ranks_per_node) == []


def test_topology_matches_the_config(rendered):
    name, job, docs = rendered
    (ptj,) = by_kind(docs, "PyTorchJob")
    replicas = ptj["spec"]["pytorchReplicaSpecs"]
    nodes, low = job.trainer.num_nodes, job.trainer.min_nodes or job.trainer.num_nodes
    if job.cluster.eks.elastic or low < nodes:
        assert set(replicas) == {"Worker"} and replicas["Worker"]["replicas"] == nodes
        policy = ptj["spec"]["elasticPolicy"]
        assert (policy["minReplicas"], policy["maxReplicas"]) == (low, nodes)
        assert policy["rdzvBackend"] == job.cluster.eks.rdzv_backend
        assert policy["maxRestarts"] == (job.trainer.max_restarts if low < nodes else job.cluster.eks.backoff_limit)
    else:
        assert replicas["Master"]["replicas"] == 1
        assert replicas.get("Worker", {"replicas": 0})["replicas"] == nodes - 1
        assert "elasticPolicy" not in ptj["spec"]
    script = replicas[next(iter(replicas))]["template"]["spec"]["containers"][0]["command"][2]
    assert f"--nproc_per_node={topology_of(job).ranks_per_node}" in script
    assert f"--nnodes={low}:{nodes}" in script if low < nodes else f"--nnodes={nodes}" in script
    assert (f"--max-restarts={job.trainer.max_restarts}" in script) == (low < nodes)
    if "precompile" in name:
        assert "neuron_parallel_compile python -m llm_launch.train.node_run" in script
        assert script.count("llm_launch.train.node_run") == 2
        assert "rm " not in script  # the compile cache is never deleted by a job


def test_companion_documents(rendered):
    _, job, docs = rendered
    (ptj,) = by_kind(docs, "PyTorchJob")
    name = ptj["metadata"]["name"]
    (cm,) = by_kind(docs, "ConfigMap")
    assert cm["metadata"]["name"] == f"{name}-job" and cm["apiVersion"] == "v1"
    assert yaml.safe_load(cm["data"]["job.yaml"])["job_name"] == job.job_name
    pod = next(iter(ptj["spec"]["pytorchReplicaSpecs"].values()))["template"]["spec"]
    assert {"name": "job", "configMap": {"name": cm["metadata"]["name"]}} in pod["volumes"]
    etcd = by_kind(docs, "Service") + by_kind(docs, "Deployment")
    if (job.cluster.eks.elastic or job.trainer.min_nodes) and job.cluster.eks.rdzv_backend == "etcd":
        service, deployment = etcd
        assert service["metadata"]["name"] == deployment["metadata"]["name"] == ptj["spec"]["elasticPolicy"]["rdzvHost"]
        assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()
        assert service["spec"]["ports"][0]["port"] == ptj["spec"]["elasticPolicy"]["rdzvPort"] == 2379
        assert "--enable-v2" in deployment["spec"]["template"]["spec"]["containers"][0]["command"]
    else:
        assert etcd == []
    for doc in docs:
        assert doc["metadata"]["namespace"] == job.cluster.eks.namespace
        assert len(doc["metadata"]["name"]) <= 63


def test_secret_only_by_reference(job_for):
    job = job_for("recipe=llama3_8b_cpt_trn1", "cluster=eks", "cluster.eks.hf_token_secret=hf-token")
    (ptj,) = [d for d in manifests(job) if d["kind"] == "PyTorchJob"]
    env = ptj["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["env"]
    token = [e for e in env if e["name"] == "HF_TOKEN"]
    assert token == [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}}}]


@pytest.mark.parametrize("breakage, expected", [
    (lambda s: s.update(nprocPerNode=32), "nprocPerNode"),
    (lambda s: s["runPolicy"].update(backoffLimit=3_000_000_000), "backoffLimit"),
    (lambda s: s["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0].update(resource={}),
     "resource"),
    (lambda s: s["pytorchReplicaSpecs"]["Master"].pop("replicas"), "Master.replicas"),
    (lambda s: s["pytorchReplicaSpecs"].update(worker=s["pytorchReplicaSpecs"].pop("Worker")), "'worker'"),
    (lambda s: s["runPolicy"].update(cleanPodPolicy="Sometimes"), "cleanPodPolicy"),
])
def test_the_validator_catches_what_a_cluster_rejects(job_for, breakage, expected):
    job = job_for(SMOKE, "cluster=eks", "instance=ml.p5.48xlarge", "trainer.num_nodes=2")
    (ptj,) = [d for d in manifests(job) if d["kind"] == "PyTorchJob"]
    broken = copy.deepcopy(ptj)
    breakage(broken["spec"])
    assert any(expected in e for e in pytorchjob_errors(broken)), pytorchjob_errors(broken)


def test_odd_job_names_become_rfc1035(job_for):
    job = job_for(SMOKE, "cluster=eks", "instance=ml.p5.48xlarge", "job_name=9_Very.Odd_Name_" + "x" * 80)
    (ptj,) = [d for d in manifests(job) if d["kind"] == "PyTorchJob"]
    assert pytorchjob_errors(ptj) == []
    assert len(ptj["metadata"]["name"]) <= 50
