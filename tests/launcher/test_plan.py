"""The plan: layouts, batch arithmetic, model size and memory that jobs resolve to.

Composed in-process with Hydra's compose API (the same config tree the CLI uses), then
planned and validated; the last tests run the real CLI in a subprocess.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from llm_launch.launcher import PROJECT_ROOT
from llm_launch.launcher.config import store
from llm_launch.launcher.plan import Plan, make_plan
from llm_launch.launcher.run_lock import LOCK_FILE
from llm_launch.launcher.tasks import TASKS
from llm_launch.launcher.validate import validate
from omegaconf import OmegaConf

RECIPES = sorted(store.RECIPES_DIR.glob("*.yaml"))
TRAINING_RECIPES = [p for p in RECIPES if TASKS[OmegaConf.load(p).get("task", "cpt")].trains_model]


def plan_of(job) -> Plan:
    """Validate the job, insist it has no problems, and return its plan."""
    findings, plan = validate(job)
    assert not findings.problems, [str(p) for p in findings.problems]
    assert plan is not None
    return plan


# --- recipes -------------------------------------------------------------------------------


def test_recipes_found():
    assert {p.stem for p in RECIPES} >= {
        "tiny_llama_cpt",
        "llama3_8b_cpt_trn1",
        "llama2_70b_cpt_trn1",
        "llama2_7b_sft_p5_fsdp",
        "mistral_7b_sft_g5",
    }


@pytest.mark.parametrize("recipe", TRAINING_RECIPES, ids=[p.stem for p in TRAINING_RECIPES])
def test_every_training_recipe_composes_validates_and_plans(recipe, job_for):
    job = job_for(f"recipe={recipe.stem}")
    findings, plan = validate(job)
    assert findings.problems == []
    assert plan is not None
    assert plan == make_plan(job)
    assert plan.world_size == plan.num_nodes * plan.ranks_per_node
    assert plan.world_size == plan.dp * plan.tp * plan.pp
    assert plan.global_batch_size == plan.micro_batch_size * plan.dp * plan.gradient_accumulation
    assert plan.memory.fits
    assert plan.params > 0 and plan.flops_per_token > 0
    json.dumps(plan.to_dict())  # plan.json must be plain data


# --- layouts -------------------------------------------------------------------------------


def test_llama2_70b_on_32_trn1_tp8_pp8(job_for):
    job = job_for("recipe=llama2_70b_cpt_trn1")
    assert job.trainer.num_nodes == 32
    assert job.instance.name == "ml.trn1.32xlarge"
    plan = plan_of(job)
    assert (plan.tp, plan.pp, plan.global_batch_size) == (8, 8, 512)
    assert plan.ranks_per_node == 32
    assert plan.world_size == 1024
    assert plan.dp == 16
    assert plan.samples_per_replica == 32
    assert plan.gradient_accumulation == 32
    assert plan.pipeline_microbatches == 32


LLAMA2_7B_TRN1_TP8_DP16 = ("recipe=llama3_8b_cpt_trn1", "model=llama2_7b", "parallelism.tp=8",
                           "parallelism.dp=16", "training.seq_len=4096")


def test_llama2_7b_trn1_tp8_dp16_on_4_nodes(job_for):
    plan = plan_of(job_for(*LLAMA2_7B_TRN1_TP8_DP16, "trainer.num_nodes=4"))
    assert plan.model == "llama2_7b"
    assert plan.world_size == 128
    assert (plan.tp, plan.pp, plan.dp) == (8, 1, 16)


def test_llama2_7b_trn1_tp8_dp16_on_1_node_says_4_nodes(job_for):
    findings, _ = validate(job_for(*LLAMA2_7B_TRN1_TP8_DP16, "trainer.num_nodes=1"))
    nodes = [p for p in findings.problems if p.field == "trainer.num_nodes"]
    assert len(nodes) == 1, [str(p) for p in findings.problems]
    assert "needs 128 ranks" in nodes[0].message
    assert "set trainer.num_nodes=4" in nodes[0].message


def test_two_p5_with_tp8_and_fsdp_across_nodes(job_for):
    plan = plan_of(job_for("recipe=llama2_7b_sft_p5_fsdp"))
    assert (plan.num_nodes, plan.ranks_per_node) == (2, 8)
    assert plan.world_size == 16
    assert (plan.tp, plan.dp) == (8, 2)
    assert plan.data_parallel == "fsdp"
    assert plan.gradient_accumulation == 64 // (2 * 2)


@pytest.mark.parametrize("cluster", ["local", "slurm"])
def test_cpu_node_type_plans_here_and_on_slurm(job_for, cluster):
    plan = plan_of(job_for("instance=cpu", f"cluster={cluster}"))
    assert (plan.instance, plan.accelerator, plan.ranks_per_node, plan.world_size) == ("cpu", "cpu", 2, 2)


def test_cpu_nodes_train_across_nodes_on_slurm_without_efa(job_for):
    findings, plan = validate(job_for("instance=cpu", "cluster=slurm", "trainer.num_nodes=2",
                                      "training.global_batch_size=16", "cluster.slurm.shared_dir=/shared"))
    assert findings.problems == [] and plan.world_size == 4  # gloo over TCP: no EFA needed


def test_trn2_ranks_follow_logical_core_config(job_for):
    default = plan_of(job_for("recipe=llama3_8b_cpt_trn1", "instance=ml.trn2.48xlarge"))
    assert default.logical_core_config == 2
    assert default.ranks_per_node == 64
    assert default.world_size == 4 * 64
    # 12 GiB per rank at LNC=1: the torch engine's full-vocabulary logits of 8192-token rows need more; 4096 fit
    lnc1 = plan_of(job_for("recipe=llama3_8b_cpt_trn1", "instance=ml.trn2.48xlarge",
                           "instance.logical_core_config=1", "training.seq_len=4096"))
    assert lnc1.logical_core_config == 1
    assert lnc1.ranks_per_node == 128
    assert lnc1.world_size == 4 * 128


# --- model size ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "seq_len", "params_b", "params_tol", "gflops", "gflops_tol"),
    [
        # Meta: Llama 3 8B has 8.03 B parameters; torchtitan's 6N + 12LHQT at seq 8192.
        ("llama3_8b", 8192, 8.03, 0.005, 57.91, 0.005),
        ("llama3_70b", 8192, 70.55, 0.005, 481.4, 0.05),
        ("llama2_7b", 4096, 6.74, 0.005, None, None),
    ],
)
def test_params_and_flops_match_published(job_for, model, seq_len, params_b, params_tol, gflops, gflops_tol):
    plan = make_plan(job_for("recipe=llama3_8b_cpt_trn1", f"model={model}", f"training.seq_len={seq_len}"))
    assert plan.params / 1e9 == pytest.approx(params_b, abs=params_tol)
    if gflops is not None:
        assert plan.flops_per_token / 1e9 == pytest.approx(gflops, abs=gflops_tol)
    assert plan.params_non_embedding < plan.params


# --- memory --------------------------------------------------------------------------------


P5_LLAMA3_8B = ("recipe=llama2_7b_sft_p5_fsdp", "model=llama3_8b")
TRN1_LLAMA3_8B = ("recipe=llama3_8b_cpt_trn1",)


@pytest.mark.parametrize("base", [P5_LLAMA3_8B, TRN1_LLAMA3_8B], ids=["p5", "trn1"])
def test_memory_grows_as_checkpointing_goes_full_to_none(job_for, base):
    totals = [make_plan(job_for(*base, f"parallelism.activation_checkpointing={mode}")).memory
              for mode in ("full", "selective", "none")]
    assert totals[0].activations < totals[1].activations < totals[2].activations
    assert totals[0].total < totals[1].total < totals[2].total
    assert totals[0].weights == totals[2].weights


@pytest.mark.parametrize("base", [P5_LLAMA3_8B, TRN1_LLAMA3_8B], ids=["p5", "trn1"])
def test_memory_grows_with_micro_batch_size(job_for, base):
    totals = [make_plan(job_for(*base, f"training.micro_batch_size={mbs}")).memory.total for mbs in (1, 2, 4)]
    assert totals[0] < totals[1] < totals[2]


@pytest.mark.parametrize(
    ("base", "tps"),
    [(P5_LLAMA3_8B, (1, 2, 4, 8)), (TRN1_LLAMA3_8B, (8, 16, 32))],
    ids=["p5", "trn1"],
)
def test_memory_falls_as_tp_grows(job_for, base, tps):
    totals = [make_plan(job_for(*base, f"parallelism.tp={tp}")).memory.total for tp in tps]
    assert all(a > b for a, b in zip(totals[:-1], totals[1:], strict=True)), totals


def test_lora_plans_gradients_and_optimizer_state_for_the_adapters_only(job_for):
    lora = make_plan(job_for("recipe=llama3_8b_dpo_p5_lora")).memory  # r 16 on all seven linear layers, fsdp over 8
    per_layer = 16 * ((4096 + 4096) + 2 * (4096 + 1024) + (4096 + 4096) + 3 * (4096 + 14336))  # r x (in + out)
    adapters = 32 * per_layer
    assert lora.gradients == pytest.approx(4 * adapters / 8)
    assert lora.optimizer == pytest.approx(8 * adapters / 8)
    full = make_plan(job_for("recipe=llama3_8b_dpo_p5_lora", "training.lora.enabled=false")).memory
    assert full.optimizer > 100 * lora.optimizer  # full fine-tuning keeps AdamW state for all 8 B parameters
    assert lora.total < full.total


# --- the CLI -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("recipe", "world", "dp"),
    [("llama2_70b_cpt_trn1", 1024, 16), ("llama2_7b_sft_p5_fsdp", 16, 2), ("tiny_llama_cpt", 2, 2)],
)
def test_cli_plan_writes_plan_json(cli, tmp_path, recipe, world, dp):
    result = cli(f"recipe={recipe}")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    plan_file = tmp_path / "out" / "plan.json"
    assert f"plan written to {plan_file}" in result.stdout
    data = json.loads(plan_file.read_text())
    assert (data["world_size"], data["dp"]) == (world, dp)
    assert data["memory"]["fits"] is True
    written = sorted(p.name for p in plan_file.parent.iterdir() if p.name != LOCK_FILE)  # the folder's run lock
    assert written == ["plan.json"]  # plan renders nothing else


def test_cli_plan_json_matches_in_process_plan(cli, tmp_path, job_for):
    result = cli("recipe=llama3_8b_cpt_trn1", "trainer.num_nodes=8")
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "out" / "plan.json").read_text())
    plan = make_plan(job_for("recipe=llama3_8b_cpt_trn1", "trainer.num_nodes=8"))
    for key in ("world_size", "dp", "tp", "pp", "gradient_accumulation", "params", "tokens_per_step"):
        assert data[key] == getattr(plan, key), key


HEAVY = ("torch", "transformers", "accelerate", "safetensors")


@pytest.mark.parametrize("recipe", ["tiny_llama_cpt", "llama2_70b_cpt_trn1"])
def test_cli_plan_never_imports_torch_or_transformers(tmp_path, recipe):
    out = tmp_path / "out"
    script = textwrap.dedent(f"""
        import sys
        heavy = {HEAVY!r}
        from llm_launch.launcher.cli import main
        loaded = [m for m in heavy if m in sys.modules]
        assert not loaded, f"import llm_launch.launcher.cli loaded {{loaded}}"
        sys.argv = ["llm-launch", "recipe={recipe}", "action=plan", "output_dir={out}"]
        try:
            main()
        except SystemExit as exc:  # main() exits only on errors
            raise AssertionError(f"main() exited with {{exc.code}}") from None
        loaded = [m for m in heavy if m in sys.modules]
        assert not loaded, f"planning loaded {{loaded}}"
        print("NO-HEAVY-IMPORTS")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=PROJECT_ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "NO-HEAVY-IMPORTS" in result.stdout
    assert (out / "plan.json").is_file()


# --- one dialect: every training recipe plans on a GPU and on a Trainium type -------------------------


def _portable_instances(job) -> tuple[str, str]:
    """A GPU type and a Trainium 1 (NxD) type of the recipe's scale: this machine's recipes try single-node types."""
    return ("local_gpu", "ml.trn1.2xlarge") if job.cluster.kind == "local" else ("ml.p5.48xlarge", "ml.trn1.32xlarge")


@pytest.mark.system
@pytest.mark.parametrize("recipe", TRAINING_RECIPES, ids=[p.stem for p in TRAINING_RECIPES])
def test_every_training_recipe_plans_on_a_gpu_and_on_a_trainium_type_by_changing_instance(recipe, job_for):
    job = job_for(f"recipe={recipe.stem}")
    gpu, trainium = _portable_instances(job)
    backends = TASKS[job.task].backends  # a task NxD does not run is refused there (test below)
    for instance, sharded in [(gpu, "fsdp")] + ([(trainium, "zero1")] if "nxd" in backends else []):
        job = job_for(f"recipe={recipe.stem}", f"instance={instance}")
        plan = plan_of(job)
        assert plan.instance == instance and plan.memory.fits
        assert plan.data_parallel in (sharded, "ddp")  # auto became the backend's sharding; ddp runs on both
        if instance.startswith("ml.trn"):
            assert job.parallelism.kv_replicator * job.model.num_key_value_heads >= job.parallelism.tp


# This machine's recipes are sized for 2 CPU ranks and no trn2 type smaller than 64 ranks is in the catalog, so they
# also scale the global batch to the ranks; every remote recipe changes instance= alone.
LOCAL_BATCH_FOR_64_RANKS = {"tiny_llama_cpt": 256, "tiny_llama_sft": 128, "tiny_llama_dpo": 256}


@pytest.mark.parametrize("recipe", TRAINING_RECIPES, ids=[p.stem for p in TRAINING_RECIPES])
def test_every_training_recipe_plans_on_trn2_native_through_the_torch_engine(recipe, job_for):
    extra = [f"training.global_batch_size={LOCAL_BATCH_FOR_64_RANKS[recipe.stem]}"] \
        if recipe.stem in LOCAL_BATCH_FOR_64_RANKS else []
    job = job_for(f"recipe={recipe.stem}", "instance=ml.trn2.48xlarge", *extra)
    plan = plan_of(job)
    assert job.neuron.stack == "native" and job.parallelism.kv_replicator is None
    assert (plan.engine, plan.neuron_stack, plan.device, plan.process_group) == ("torch", "native", "neuron", "neuron")
    assert plan.data_parallel in ("fsdp", "ddp") and plan.ranks_per_node == 64 and plan.memory.fits
    assert plan.memory.capacity / 2**30 == pytest.approx(24.0)  # 96 GiB per chip / 4 logical cores at LNC=2
    assert plan.estimates.peak_tflops_per_rank == pytest.approx(158.0)  # 79 per NeuronCore-v3 x LNC 2 (torchtitan)


def test_a_task_is_refused_on_a_backend_that_does_not_run_it(job_for):
    findings, _ = validate(job_for("recipe=tiny_llama_dpo", "instance=ml.trn1.2xlarge"))
    assert [p.field for p in findings.problems] == ["task"]
    assert "dpo runs on the torch engine only, not on nxd" in findings.problems[0].message
    findings, _ = validate(job_for("recipe=tiny_llama_sft", "instance=ml.trn1.2xlarge", "training.lora.enabled=true",
                                   "model.pretrained_path=null"))
    assert [p.field for p in findings.problems] == ["training.lora.enabled"]
    assert "not on NxD" in findings.problems[0].message


def test_auto_is_the_default_and_becomes_fsdp_on_gpus_and_zero1_with_kv_replication_on_trainium(job_for, tmp_path):
    from llm_launch.launcher.config.schema import ParallelismConfig
    from llm_launch.launcher.jobfile import read_job, write_job

    assert ParallelismConfig().data_parallel == "auto"
    gpu = job_for("recipe=llama3_8b_cpt_trn1", "instance=ml.p5.48xlarge")
    trn = job_for("recipe=llama3_8b_cpt_trn1", "parallelism.tp=32")
    assert (gpu.parallelism.data_parallel, gpu.parallelism.kv_replicator) == ("fsdp", None)
    assert (trn.parallelism.data_parallel, trn.parallelism.kv_replicator) == ("zero1", 4)  # 8 KV heads x 4 = tp 32
    written = read_job(write_job(trn, tmp_path / "job.yaml"))  # what the training engine reads
    assert (written.parallelism.data_parallel, written.parallelism.kv_replicator) == ("zero1", 4)
    assert "data_parallel: zero1" in (tmp_path / "job.yaml").read_text()


def test_gradient_sync_auto_syncs_ddp_once_per_step_and_keeps_fsdp_gradients_sharded(job_for, tmp_path):
    from llm_launch.launcher.jobfile import read_job, write_job

    ddp = job_for("parallelism=ddp")
    assert ddp.parallelism.gradient_sync == "last_microbatch"  # DDP's gradients are whole anyway
    assert job_for("parallelism.data_parallel=fsdp").parallelism.gradient_sync == "every_microbatch"
    explicit = job_for("parallelism=ddp", "parallelism.gradient_sync=every_microbatch")
    assert explicit.parallelism.gradient_sync == "every_microbatch"  # a user's choice stays
    assert read_job(write_job(ddp, tmp_path / "job.yaml")).parallelism.gradient_sync == "last_microbatch"


def test_explicit_modes_are_checked_against_the_backend(job_for):
    findings, _ = validate(job_for("recipe=llama3_8b_cpt_trn1", "parallelism.data_parallel=hsdp"))
    assert [(p.field, "torch-engine strategy" in p.message) for p in findings.problems] == [("parallelism.data_parallel", True)]
    findings, _ = validate(job_for("recipe=llama3_8b_cpt_trn1", "instance=ml.p5.48xlarge",
                                   "parallelism.data_parallel=ddp"))
    assert findings.problems == []


def test_none_is_refused_where_replicas_would_train_apart_and_allowed_at_dp_1(job_for):
    findings, _ = validate(job_for("parallelism.data_parallel=none"))  # 2 CPU ranks: dp 2
    assert [p.field for p in findings.problems] == ["parallelism.data_parallel"]
    assert "training apart" in findings.problems[0].message
    findings, plan = validate(job_for("parallelism.data_parallel=none", "trainer.nproc_per_node=1",
                                      "training.global_batch_size=4"))
    assert findings.problems == [] and plan.dp == 1


def test_memory_error_names_the_smallest_node_count_that_fits(job_for):
    # Full recompute: with selective, 70B's activations at seq 4096 alone exceed an 80 GB GPU at any node count
    # (traced: tests/launcher/fixtures/traced_memory.json).
    base = ("recipe=llama2_7b_sft_p5_fsdp", "model=llama3_70b", "parallelism=sharded", "trainer.num_nodes=1",
            "training.micro_batch_size=1", "parallelism.activation_checkpointing=full")
    findings, _ = validate(job_for(*base))
    (memory,) = [p for p in findings.problems if p.field == "memory"]
    nodes = int(memory.message.split("trainer.num_nodes=")[1].split()[0])
    assert nodes > 1
    assert make_plan(job_for(*base, f"trainer.num_nodes={nodes}")).memory.fits
    assert not make_plan(job_for(*base, f"trainer.num_nodes={nodes - 1}")).memory.fits


def test_hsdp_with_tp_filling_the_node_warns_that_it_only_replicates(job_for):
    findings, plan = validate(job_for("recipe=llama2_7b_sft_p5_fsdp", "parallelism.data_parallel=hsdp",
                                      "parallelism.tp=8"))  # 2 nodes x 8 GPUs, tp 8: one data-parallel rank per node
    assert plan is not None and plan.dp == 2
    (warning,) = [w for w in findings.warnings if w.startswith("parallelism.data_parallel:")]
    assert "pure replication over 2" in warning and "use fsdp" in warning
    sharding, _ = validate(job_for("recipe=llama2_7b_sft_p5_fsdp", "parallelism.data_parallel=hsdp",
                                   "parallelism.tp=4"))  # shard 2 inside each node: no warning
    assert not [w for w in sharding.warnings if w.startswith("parallelism.data_parallel:")]
