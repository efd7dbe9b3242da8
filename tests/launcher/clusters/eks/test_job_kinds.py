"""EKS job kinds beyond the v1 PyTorchJob: TrainJob (Kubeflow Trainer v2) and HyperPodPyTorchJob, checked against
the TrainJob CRD and the HyperPod CLI's model; and how every kind's nodes meet."""

from __future__ import annotations

import copy
import re

import pytest
import yaml
from cluster_locations import cluster_inputs
from job_schemas import hyperpod_errors, trainjob_errors
from llm_launch.launcher.clusters.eks.render import manifests

EKS = ("cluster=eks", *cluster_inputs("eks", "sft"), "action=render")
VARIANTS = {
    "trn1_recipe": ("recipe=llama3_8b_cpt_trn1",),
    "p5_two_nodes": ("recipe=smoke_allreduce", "instance=ml.p5.48xlarge", "trainer.num_nodes=2"),
    "sft_extras": ("recipe=llama2_7b_sft_p5_fsdp", "cluster.eks.hf_token_secret=hf-token",
                   "cluster.eks.service_account=trainer", "cluster.eks.tolerations=[{key: nvidia.com/gpu, operator: "
                   "Exists, effect: NoSchedule}]"),
    "cpu_pool": ("recipe=tiny_llama_cpt", "instance=cpu", "trainer.num_nodes=2", "training.global_batch_size=16",
                 "cluster.eks.node_selector={eks.amazonaws.com/nodegroup: cpu-pool}"),
}


def _job(job_for, render_job, kind, variant):
    job, files = render_job(job_for(*VARIANTS[variant], *EKS, f"cluster.eks.job_kind={kind}"))
    return job, list(yaml.safe_load_all(files[-1].read_text()))


def _script(container):
    return container["command"][2]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_trainjob_passes_the_crd_and_carries_the_topology(job_for, render_job, variant):
    job, docs = _job(job_for, render_job, "trainjob", variant)
    cm, tj = docs
    assert cm["kind"] == "ConfigMap" and trainjob_errors(tj) == []
    trainer = tj["spec"]["trainer"]
    assert trainer["numNodes"] == job.trainer.num_nodes and isinstance(trainer["numProcPerNode"], int)
    assert tj["spec"]["runtimeRef"]["name"] == "torch-distributed"
    script = trainer["command"][2]
    assert '--node_rank="${PET_NODE_RANK}" --master_addr="${PET_MASTER_ADDR}" --master_port="${PET_MASTER_PORT}"' in script
    pod = tj["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]
    pod_spec = pod["template"]["spec"]["template"]["spec"]
    assert {"name": "job", "configMap": {"name": cm["metadata"]["name"]}} in pod_spec["volumes"]
    assert pod_spec["containers"][0]["name"] == "node"  # the runtime's trainer container
    if job.instance.accelerator == "cpu":
        assert pod_spec["nodeSelector"] == {"eks.amazonaws.com/nodegroup": "cpu-pool"}
        assert "resourcesPerNode" not in trainer
    else:
        assert trainer["resourcesPerNode"]["limits"][job.instance.k8s_accelerator_resource] == \
            job.instance.accelerators_per_node


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_hyperpod_job_passes_the_hyperpod_model(job_for, render_job, variant):
    job, docs = _job(job_for, render_job, "hyperpod", variant)
    _, hp = docs
    assert hyperpod_errors(hp) == []
    spec = hp["spec"]
    (replica,) = spec["replicaSpecs"]
    assert replica["replicas"] == job.trainer.num_nodes
    container = replica["template"]["spec"]["containers"][0]
    assert _script(container).splitlines()[-1].startswith("exec hyperpodrun ")
    assert "--rdzv-backend=hyperpod" in _script(container)
    if job.instance.sagemaker_type:
        assert replica["template"]["spec"]["nodeSelector"]["node.kubernetes.io/instance-type"] == job.instance.sagemaker_type
    policy = spec["runPolicy"]
    assert policy["jobMaxRetryCount"] == job.cluster.eks.backoff_limit
    if job.task == "smoke":
        assert "logMonitoringConfiguration" not in policy  # no step lines to watch
        return
    start, hang = policy["logMonitoringConfiguration"]
    assert start["expectedStartCutOffInSeconds"] == job.cluster.eks.hyperpod_start_timeout_s
    assert hang["expectedRecurringFrequencyInSeconds"] == job.cluster.eks.hyperpod_step_log_timeout_s


def test_hyperpod_log_rule_matches_the_trainers_own_step_line_and_not_validation_lines(job_for, tmp_path, capsys):
    """The rule's pattern against the lines train/metrics.py prints for a step record and a validation record."""
    from llm_launch.train.metrics import MetricsLog

    job = job_for("recipe=llama3_8b_cpt_trn1", *EKS, "cluster.eks.job_kind=hyperpod")
    rule, _ = manifests(job)[-1]["spec"]["runPolicy"]["logMonitoringConfiguration"]
    log = MetricsLog(tmp_path, True)
    log.write({"step": 7, "loss": 2.5, "lr": 1e-4, "grad_norm": 0.5})
    log.write({"step": 7, "val_loss": 2.4})
    log.close()
    step_line, val_line = capsys.readouterr().out.splitlines()[:2]
    assert re.fullmatch(rule["logPattern"], step_line) and not re.fullmatch(rule["logPattern"], val_line)


@pytest.mark.parametrize("breakage, expected", [
    (lambda s: s["trainer"].update(numProcPerNode="auto"), "numProcPerNode"),
    (lambda s: s["trainer"]["env"].append({"name": "PET_NNODES", "value": "2"}), "reserved"),
    (lambda s: s.pop("runtimeRef"), "runtimeRef"),
    (lambda s: s["trainer"].update(replicas=2), "replicas"),
])
def test_the_trainjob_validator_catches_what_a_cluster_rejects(job_for, breakage, expected):
    job = job_for("recipe=smoke_allreduce", *EKS, "instance=ml.p5.48xlarge", "cluster.eks.job_kind=trainjob")
    tj = copy.deepcopy(manifests(job)[-1])
    breakage(tj["spec"])
    assert any(expected in e for e in trainjob_errors(tj)), trainjob_errors(tj)


@pytest.mark.parametrize("breakage, expected", [
    (lambda s: s["runPolicy"].update(jobMaxRetries=3), "jobMaxRetries"),
    (lambda s: s["runPolicy"]["restartPolicy"].pop("evalPeriodSeconds"), "eval_period_seconds"),
    (lambda s: s["runPolicy"]["logMonitoringConfiguration"][0].pop("logPattern"), "log_pattern"),
    (lambda s: s.update(replicas=3), "replicas"),
])
def test_the_hyperpod_model_catches_what_the_operator_rejects(job_for, breakage, expected):
    job = job_for("recipe=llama2_7b_sft_p5_fsdp", *EKS, "cluster.eks.job_kind=hyperpod")
    hp = copy.deepcopy(manifests(job)[-1])
    breakage(hp["spec"])
    assert any(expected in e for e in hyperpod_errors(hp)), hyperpod_errors(hp)


def test_static_pytorchjob_passes_master_and_rank_from_what_every_operator_version_injects(job_for):
    job = job_for("recipe=smoke_allreduce", *EKS, "instance=ml.p5.48xlarge", "trainer.num_nodes=2")
    ptj = manifests(job)[-1]
    for role in ("Master", "Worker"):
        script = _script(ptj["spec"]["pytorchReplicaSpecs"][role]["template"]["spec"]["containers"][0])
        assert '--node_rank="${RANK}" --master_addr="${MASTER_ADDR}" --master_port="${MASTER_PORT}"' in script


def test_elastic_c10d_endpoint_agrees_with_the_rendered_rdzv_port(job_for):
    job = job_for("recipe=smoke_allreduce", *EKS, "instance=ml.p5.48xlarge", "trainer.num_nodes=2",
                  "cluster.eks.elastic=true")
    ptj = manifests(job)[-1]
    port = ptj["spec"]["elasticPolicy"]["rdzvPort"]
    script = _script(ptj["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0])
    assert f"--rdzv_backend=c10d --rdzv_endpoint={ptj['metadata']['name']}-worker-0:{port}" in script


@pytest.mark.parametrize("kind", ["trainjob", "hyperpod"])
def test_elastic_is_refused_for_kinds_that_have_no_torch_elastic_policy(job_for, kind):
    from llm_launch.launcher.validate import validate

    findings, _ = validate(job_for("recipe=smoke_allreduce", *EKS, "instance=ml.p5.48xlarge",
                                   f"cluster.eks.job_kind={kind}", "cluster.eks.elastic=true"))
    assert [p.field for p in findings.problems] == ["cluster.eks.elastic"]


@pytest.mark.parametrize("elastic", [True, False])
def test_elastic_pods_opt_out_of_the_shared_rendezvous_store(job_for, elastic):
    """A restarted elastic pod waits for a master address a surviving rank 0 never writes again unless torch's
    TCPStore sharing is off (pytorch/pytorch#135712; found by the pod harness: tests/launcher/container)."""
    job = job_for("recipe=smoke_allreduce", *EKS, "instance=ml.p5.48xlarge", "trainer.num_nodes=2",
                  f"cluster.eks.elastic={str(elastic).lower()}")
    ptj = manifests(job)[-1]
    role = "Worker" if elastic else "Master"
    env = {e["name"]: e.get("value") for e in
           ptj["spec"]["pytorchReplicaSpecs"][role]["template"]["spec"]["containers"][0]["env"]}
    assert (env.get("TORCH_DISABLE_SHARE_RDZV_TCP_STORE") == "1") == elastic


def test_hyperpod_pods_set_nnodes_and_warn_about_the_agents_torch_pin(job_for):
    """hyperpodrun's rendezvous reads NNODES when it is created (hyperpod-elastic-agent 1.1.3), and the agent does
    not start under torch 2.13 (checked in tests/launcher/container/test_hyperpod_agent.py)."""
    from llm_launch.launcher.validate import validate

    job = job_for("recipe=smoke_allreduce", *EKS, "instance=ml.p5.48xlarge", "trainer.num_nodes=2",
                  "cluster.eks.job_kind=hyperpod")
    hp = manifests(job)[-1]
    env = {e["name"]: e.get("value") for e in hp["spec"]["replicaSpecs"][0]["template"]["spec"]["containers"][0]["env"]}
    assert env["NNODES"] == "2" == str(hp["spec"]["replicaSpecs"][0]["replicas"])
    findings, _ = validate(job)
    assert any(w.startswith("cluster.eks.job_kind:") and "torch < 2.12" in w for w in findings.warnings)


@pytest.mark.parametrize("cluster", ["eks", "slurm"])
def test_s3_tokenizer_and_model_folders_are_read_in_eks_pods_only(job_for, cluster):
    """EKS pods copy s3:// tokenizer and model folders at start (train/s3_folders.py, with the pod's own credentials:
    nothing secret is rendered); Slurm jobs read folders from the shared file system and are refused."""
    from cluster_locations import cluster_inputs as inputs_for
    from llm_launch.launcher.validate import validate

    tok, model = "s3://my-bucket/tokenizers/llama3", "s3://my-bucket/models/llama3_8b"
    job = job_for("recipe=llama2_7b_sft_p5_fsdp", f"cluster={cluster}", *inputs_for(cluster, "sft"),
                  f"training.data.tokenizer_path={tok}", f"model.pretrained_path={model}", "action=render")
    findings, _ = validate(job)
    keys = {p.field for p in findings.problems}
    if cluster == "slurm":
        assert {"training.data.tokenizer_path", "model.pretrained_path"} <= keys
        return
    assert not keys & {"training.data.tokenizer_path", "model.pretrained_path"}, findings.problems
    config = yaml.safe_load(manifests(job)[0]["data"]["job.yaml"])
    assert config["training"]["data"]["tokenizer_path"] == tok and config["model"]["pretrained_path"] == model
    assert "AWS_SECRET_ACCESS_KEY" not in yaml.safe_dump_all(manifests(job))
