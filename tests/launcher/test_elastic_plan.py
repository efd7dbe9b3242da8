"""Elastic node count (trainer.min_nodes): the plan's layouts at min and max nodes, its refusals, the job a rank runs
once torchrun says the world size, and the SageMaker refusal (the renders: clusters/eks/test_eks_render.py and
clusters/slurm/test_slurm_render.py)."""

from __future__ import annotations

import pytest
from cluster_locations import cluster_inputs
from llm_launch.launcher.elastic import WorldSizeError, layout_at, runtime_job
from llm_launch.launcher.plan import make_plan
from llm_launch.launcher.validate import validate

TINY_EKS = ("recipe=tiny_llama_cpt", "cluster=eks", "instance=cpu", "cluster.image=local/llm-launch:test",
            "cluster.eks.node_selector={kubernetes.io/os: linux}", "parallelism.tp=2", "training.global_batch_size=8",
            "training.micro_batch_size=2", *cluster_inputs("eks", "cpt"))


def errors(job) -> dict[str, str]:
    findings, _ = validate(job)
    return {p.field: p.message for p in findings.problems}


def test_plan_shows_the_layout_at_min_and_at_max_nodes_with_the_same_global_batch(job_for):
    job = job_for(*TINY_EKS, "trainer.num_nodes=2", "trainer.min_nodes=1")
    assert errors(job) == {}
    el = make_plan(job).elastic
    assert (el["min_nodes"], el["max_nodes"], el["max_restarts"]) == (1, 2, 3)
    # global batch 8 = micro 2 x dp x grad accum at both ends
    assert (el["at_min"]["world_size"], el["at_min"]["dp"], el["at_min"]["gradient_accumulation"]) == (2, 1, 4)
    assert (el["at_max"]["world_size"], el["at_max"]["dp"], el["at_max"]["gradient_accumulation"]) == (4, 2, 2)
    assert make_plan(job_for(*TINY_EKS, "trainer.num_nodes=2")).elastic is None


def test_a_node_count_in_the_range_that_cannot_keep_the_global_batch_is_refused_with_the_min_that_can(job_for):
    # 3 nodes x 2 ranks / tp 2 = dp 3: 8 rows do not split into 3 replicas x micro 2
    job = job_for(*TINY_EKS, "trainer.num_nodes=4", "trainer.min_nodes=2")
    assert errors(job) == {"trainer.min_nodes": "on 3 node(s) (dp 3) global_batch_size 8 does not divide by "
                           "micro_batch_size 2 x dp 3 = 6, so the global batch cannot stay the same; set "
                           "trainer.min_nodes=4"}


def test_a_min_whose_memory_does_not_fit_is_refused_with_the_fewest_nodes_that_fit(job_for):
    base = ("recipe=llama2_7b_sft_p5_fsdp", "model=llama3_70b", "cluster=eks", "cluster.image=x",
            "training.global_batch_size=48", *cluster_inputs("eks", "sft"))  # 48 splits over dp 2, 3 and 4
    assert errors(job_for(*base, "trainer.num_nodes=4")) == {}
    job = job_for(*base, "trainer.num_nodes=4", "trainer.min_nodes=2")
    problems = errors(job)
    assert list(problems) == ["trainer.min_nodes"]
    assert not layout_at(job, 2).fits and layout_at(job, 4).fits
    fewest = 3 if layout_at(job, 3).fits else 4
    assert problems["trainer.min_nodes"].startswith("on 2 node(s) a rank needs an estimated ")
    assert problems["trainer.min_nodes"].endswith(f"; set trainer.min_nodes={fewest}")


@pytest.mark.parametrize("overrides, key, words", [
    (("cluster=sagemaker",), "trainer.min_nodes", "fixed instance count (ResourceConfig.InstanceCount=2)"),
    (("cluster=eks", "cluster.eks.job_kind=trainjob"), "trainer.min_nodes", "job_kind=pytorchjob only (trainjob"),
    (("cluster=eks", "cluster.eks.job_kind=hyperpod"), "trainer.min_nodes", "job_kind=pytorchjob only (hyperpod"),
    (("trainer.min_nodes=3",), "trainer.min_nodes", "3 is above trainer.num_nodes=2"),
])
def test_refusals_are_one_line_naming_the_key(job_for, overrides, key, words):
    kind = next(o for o in overrides if o.startswith("cluster=")) if any(o.startswith("cluster=") for o in overrides) \
        else "cluster=eks"
    job = job_for("recipe=smoke_allreduce", "instance=ml.p5.48xlarge", "trainer.num_nodes=2", "trainer.min_nodes=1",
                  "cluster.image=x", kind, *[o for o in overrides if not o.startswith("cluster=")])
    found = errors(job)
    assert key in found and words in found[key], found


def test_a_fixed_dp_is_refused(job_for):
    job = job_for(*TINY_EKS, "trainer.num_nodes=2", "trainer.min_nodes=1", "parallelism.dp=2")
    assert errors(job) == {"parallelism.dp": "a fixed dp=2 cannot follow an elastic node count (1 to 2 nodes); set "
                           "parallelism.dp=null"}


def test_nxd_is_refused(job_for):
    job = job_for("recipe=llama3_8b_cpt_trn1", "cluster=eks", "trainer.min_nodes=2", *cluster_inputs("eks", "cpt"))
    assert "NxD (Trainium 1) compiles its graphs" in errors(job)["trainer.min_nodes"]


def test_a_rank_lays_out_the_job_from_the_world_size_torchrun_started(job_for):
    job = job_for(*TINY_EKS, "trainer.num_nodes=2", "trainer.min_nodes=1")
    one = make_plan(runtime_job(job, 2))
    assert (one.num_nodes, one.world_size, one.dp, one.gradient_accumulation, one.global_batch_size) == (1, 2, 1, 4, 8)
    two = make_plan(runtime_job(job, 4))
    assert (two.num_nodes, two.dp, two.gradient_accumulation, two.global_batch_size) == (2, 2, 2, 8)
    for world in (3, 6):  # not whole nodes; more nodes than the range
        with pytest.raises(WorldSizeError, match="--nnodes=1:2 --nproc_per_node=2"):
            runtime_job(job, world)
    fixed = job_for(*TINY_EKS, "trainer.num_nodes=2")
    assert runtime_job(fixed, 2) is fixed  # a fixed job's mesh checks the world size itself


def test_the_entrypoint_lays_an_elastic_job_out_for_the_ranks_it_got(job_for, monkeypatch, capsys):
    from llm_launch.train.entry import elastic_layout
    from llm_launch.train.errors import JobError

    job = job_for(*TINY_EKS, "trainer.num_nodes=2", "trainer.min_nodes=1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    running = elastic_layout(job)
    assert (running.trainer.num_nodes, make_plan(running).gradient_accumulation) == (1, 4)
    assert "elastic: nodes 1 to 2, running on 1 node(s): 2 ranks, dp 1, grad accum 4" in capsys.readouterr().out
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(JobError, match="torchrun started 3 ranks"):
        elastic_layout(job)
    fixed = job_for(*TINY_EKS, "trainer.num_nodes=2")
    assert elastic_layout(fixed) is fixed


def test_elastic_workers_meet_in_a_store_of_their_own_each_round(job_for):
    from llm_launch.launcher.environment import backend_environment

    elastic = backend_environment(job_for(*TINY_EKS, "trainer.num_nodes=2", "trainer.min_nodes=1"), "/fsx")
    assert elastic["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] == "1"  # pytorch/pytorch#135712
    assert "TORCH_DISABLE_SHARE_RDZV_TCP_STORE" not in backend_environment(job_for(*TINY_EKS), "/fsx")
