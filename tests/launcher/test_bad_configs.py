"""Bad configurations through the real CLI: exit 2, no traceback, one line per problem.

Every case runs `llm-launch action=plan output_dir=<tmp> ...` in a subprocess and expects
the field at fault and a key phrase of its message on an `error:` line. Cases are chosen
so that one rule fires alone (the header must say exactly one problem) unless noted.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass

import pytest
from cluster_locations import cluster_inputs
from llm_launch.launcher import PROJECT_ROOT

HEADER = re.compile(r"^llm-launch: (\d+) problems? found before anything ran:$", re.MULTILINE)
ERROR_LINE = re.compile(r"^  error: (\S+): (.*)$", re.MULTILINE)

P5_7B = "recipe=llama2_7b_sft_p5_fsdp"  # 2 x p5.48xlarge, FSDP, SageMaker
TRN1_8B = "recipe=llama3_8b_cpt_trn1"  # 4 x trn1.32xlarge, tp 8, auto (zero1), SageMaker
TRN1_70B = "recipe=llama2_70b_cpt_trn1"  # 32 x trn1.32xlarge, tp 8 x pp 8, zero1, SageMaker
# The default recipe (tiny_llama_cpt): 2 CPU ranks, local cluster, shipped sample data.


@dataclass(frozen=True)
class Case:
    id: str
    overrides: tuple[str, ...]
    field: str
    phrase: str
    count: int | None = 1
    """Problems the header must report; None where the rule cannot be isolated."""


DPO = "recipe=tiny_llama_dpo"
CASES = [
    # --- issue 23: MLflow 3 refuses a folder store when the first run starts, minutes into the job
    Case("mlflow_tracking_uri_is_a_folder",
         ("tracking.backends=[mlflow]", "tracking.mlflow.tracking_uri=/tmp/mlruns"),
         "tracking.mlflow.tracking_uri", "use a database, e.g. tracking.mlflow.tracking_uri=sqlite:///"),
    # --- issue 13: mistakes users make that used to get through
    # --- issue 28: the chunked loss runs where the stage computes it whole
    Case("chunked_loss_with_tensor_parallelism",
         ("parallelism.tp=2", "training.loss_chunk_tokens=64"),
         "training.loss_chunk_tokens", "not with tp=2, pp=1: set loss_chunk_tokens=0"),
    Case("chunked_loss_with_dpo",
         (DPO, "training.loss_chunk_tokens=64"),
         "training.loss_chunk_tokens", "not with task=dpo"),
    Case("negative_loss_chunk_tokens",
         ("training.loss_chunk_tokens=-1",),
         "training.loss_chunk_tokens", "must be 0 or more, got -1"),
    # --- issue 28: fp8 where FP8 tensor cores and the torchao path are
    Case("fp8_on_a100", (P5_7B, "instance=ml.p4d.24xlarge", "training.precision=fp8"),
         "training.precision", "fp8 needs FP8 tensor cores", count=None),
    Case("fp8_on_a10g", ("recipe=mistral_7b_sft_g5", "training.precision=fp8"),
         "training.precision", "fp8 needs FP8 tensor cores", count=None),
    Case("fp8_on_trainium", (TRN1_8B, "training.precision=fp8"),
         "training.precision", "fp8 training runs on NVIDIA H100/H200 GPUs", count=None),
    Case("fp8_on_cpu", ("training.precision=fp8",),
         "training.precision", "fp8 training runs on NVIDIA H100/H200 GPUs"),
    Case("fp8_with_tensor_parallelism", (P5_7B, "parallelism=fsdp_tp8", "training.precision=fp8"),
         "training.precision", "without tensor or pipeline parallelism", count=None),
    Case("virtual_pipeline_without_a_pipeline",
         ("parallelism.virtual_pp=2", "parallelism.pp_schedule=interleaved_1f1b"),
         "parallelism.virtual_pp", "virtual stages need a pipeline"),
    Case("sequence_parallel_rows_not_divisible_by_tp",
         ("parallelism.tp=2", "parallelism.sequence_parallel=true", "training.seq_len=255"),
         "training.seq_len", "255 does not divide by tp=2"),
    Case("no_data_parallel_sync_with_replicas",
         ("parallelism.data_parallel=none",),
         "parallelism.data_parallel", "replicas training apart"),
    Case("more_processes_than_gpus",
         (P5_7B, "trainer.nproc_per_node=16"),
         "trainer.nproc_per_node", "ml.p5.48xlarge has 8 GPUs", count=None),
    Case("hidden_size_not_divisible_by_heads",
         ("model.hidden_size=100",),
         "model.hidden_size", "does not divide by the 8 attention heads", count=None),
    Case("adam_beta_outside_unit_interval",
         ("training.optimizer.beta2=1.0",),
         "training.optimizer.beta2", "must be in [0, 1)"),
    Case("negative_weight_decay",
         ("training.optimizer.weight_decay=-0.1",),
         "training.optimizer.weight_decay", "must be 0 or more"),
    Case("warmup_longer_than_the_paid_run",
         (P5_7B, "training.max_steps=20"),
         "training.schedule.warmup_steps", "50 exceeds training.max_steps 20"),
    Case("lora_dropout_outside_unit_interval",
         ("training.lora.enabled=true", "training.lora.dropout=1.0"),
         "training.lora.dropout", "must be in [0, 1)"),
    Case("lora_target_module_typo",
         ("training.lora.enabled=true", "training.lora.target_modules=[q_proj,qkv_proj]"),
         "training.lora.target_modules", "qkv_proj: no such layer"),
    Case("lora_on_random_weights_in_a_paid_run",
         (P5_7B, "training.lora.enabled=true", "model.pretrained_path=null"),
         "model.pretrained_path", "LoRA adapts a trained model", count=None),
    Case("eval_without_a_model",
         ("task=eval",),
         "model.pretrained_path", "eval needs a model"),
    Case("eval_without_validation_data",
         ("task=eval", "training.data.valid_path=null"),
         "training.data.valid_path", "eval measures loss on held-out data", count=2),
    Case("sft_on_a_plain_text_corpus",
         ("recipe=tiny_llama_sft", "training.data.train_path=README.md"),
         "training.data.train_path", "(text) has columns none", count=None),
    Case("s3_tokenizer_here",
         ("training.data.tokenizer_path=s3://bucket/tokenizer",),
         "training.data.tokenizer_path", "the job reads this folder from a file system, not from S3"),
    Case("s3_model_on_sagemaker",
         (P5_7B, "model.pretrained_path=s3://bucket/llama2-7b"),
         "model.pretrained_path", "set cluster.sagemaker.channels.<name>=<that URI>", count=None),
    Case("no_validation_batches",
         ("training.eval_batches=0",),
         "training.eval_batches", "must be at least 1"),
    Case("job_name_dot_dot",
         ("job_name=..",),
         "job_name", "'..' starts with '.'"),
    Case("job_name_too_long",
         ("job_name=" + "a" * 300,),
         "job_name", "is 300 characters long; keep it to 128"),
    Case("job_name_with_a_newline_stays_one_line",
         ("job_name='evil\n  error: forged: line'",),
         "job_name", "'evil\\n  error: forged: line' must be"),
    # --- preference tuning (task=dpo)
    Case("dpo_beta_zero", (DPO, "training.preference.beta=0"), "training.preference.beta", "must be positive"),
    Case("dpo_label_smoothing_half", (DPO, "training.preference.label_smoothing=0.5"),
         "training.preference.label_smoothing", "[0, 0.5)"),
    Case("dpo_label_smoothing_with_ipo",
         (DPO, "training.preference.loss=ipo", "training.preference.label_smoothing=0.1"),
         "training.preference.label_smoothing", "sigmoid loss only"),
    Case("dpo_unknown_loss", (DPO, "training.preference.loss=hinge"), "training.preference.loss", "sigmoid, ipo"),
    Case("dpo_with_pipeline", (DPO, "parallelism.pp=2", "parallelism.tp=1"), "parallelism.pp", "one stage"),
    Case("dpo_on_trainium1", (DPO, "instance=ml.trn1.2xlarge"), "task", "torch engine only, not on nxd"),
    Case("dpo_on_sft_records", (DPO, "training.data.train_path=${project_root:}/data/sample/sft/train.jsonl"),
         "training.data.train_path", "dpo reads prompt, chosen and rejected"),
    # --- training engine limits
    Case("mistral_rows_longer_than_its_sliding_window",
         ("recipe=mistral_7b_sft_g5", "training.seq_len=8192"),
         "training.seq_len", "exceeds mistral_7b's sliding_window 4096", count=None),
    Case("lora_with_tensor_parallel",
         ("parallelism.tp=2", "training.lora.enabled=true"),
         "training.lora.enabled", "not tensor-parallel"),
    Case("tied_embeddings_across_pipeline_stages",
         ("parallelism.pp=2", "model.tie_word_embeddings=true"),
         "parallelism.pp", "tied input and output embeddings"),
    Case("neuron_monitor_without_neuroncores",
         ("neuron.monitor=true",),
         "neuron.monitor", "neuron-monitor watches NeuronCores; local_cpu has none"),
    Case("corpus_records_lack_the_text_field",
         ("training.data.text_field=body",),
         "training.data.text_field", "'body' is not a field of training.data.train_path's records"),
    # --- model vs parallel layout
    Case("heads_not_divisible_by_tp",
         (TRN1_8B, "model.num_attention_heads=24", "model.head_dim=128", "parallelism.tp=16"),
         "parallelism.tp", "does not divide the 24 attention heads"),
    Case("tiny_heads_and_kv_not_divisible_by_tp",
         ("parallelism.tp=3", "instance.accelerators_per_node=3"),
         "parallelism.tp", "does not divide the 8 attention heads", count=2),
    Case("gpu_tp_does_not_divide_kv_heads",
         (P5_7B, "model=llama3_8b", "model.num_key_value_heads=4", "parallelism.tp=8"),
         "parallelism.tp", "KV-head replication exists only on the NxD stack"),
    Case("gpu_tp16_llama3_8b_kv_heads_and_node",
         (P5_7B, "model=llama3_8b", "parallelism.tp=16"),
         "parallelism.tp", "does not divide the 8 KV heads", count=2),
    Case("trainium_tp_neither_divides_nor_multiplies_kv_heads",
         (TRN1_8B, "model.num_attention_heads=48", "model.head_dim=128", "model.num_key_value_heads=12",
          "parallelism.tp=16"),
         "parallelism.tp", "must divide the 12 KV heads or be a multiple of them"),
    Case("trainium_wrong_kv_replicator",
         (TRN1_8B, "parallelism.tp=32", "parallelism.kv_replicator=2"),
         "parallelism.kv_replicator", "set parallelism.kv_replicator=4"),
    Case("gpu_kv_replicator_set",
         (P5_7B, "parallelism.kv_replicator=2"),
         "parallelism.kv_replicator", "is an NxD (trn1) setting"),
    Case("layers_not_divisible_by_pp",
         (TRN1_70B, "model.num_layers=84"),
         "parallelism.pp", "pp=8 does not divide the 84 layers"),
    Case("trainium_vocab_not_divisible_by_tp",
         (TRN1_8B, "parallelism.tp=32", "model.vocab_size=128257"),
         "parallelism.tp", "vocab_size 128257 does not divide by tp=32"),
    Case("seq_len_above_max_positions",
         ("training.seq_len=4096",),
         "training.seq_len", "exceeds tiny_llama's max_position_embeddings 2048"),
    Case("sequence_parallel_with_tp1",
         ("parallelism.sequence_parallel=true",),
         "parallelism.sequence_parallel", "needs tp > 1"),
    Case("interleaved_schedule_without_virtual_pp",
         (TRN1_70B, "parallelism.pp_schedule=interleaved_1f1b"),
         "parallelism.virtual_pp", "interleaved_1f1b needs virtual_pp of 2 or more"),
    Case("trainium_gpipe_schedule",
         (TRN1_70B, "parallelism.pp_schedule=gpipe", "training.global_batch_size=128"),
         "parallelism.pp_schedule", "NxD pipelines run 1F1B"),
    # --- layout vs nodes and batch
    Case("global_batch_not_divisible_by_mbs_x_dp",
         (TRN1_70B, "training.global_batch_size=500"),
         "training.global_batch_size", "500 does not divide by micro_batch_size 1 x dp 16 = 16"),
    Case("tp_spans_nodes",
         (TRN1_8B, "model.num_attention_heads=64", "parallelism.tp=64"),
         "parallelism.tp", "tp=64 must stay within one node"),
    Case("world_not_divisible_by_tp_x_pp",
         (TRN1_8B, "parallelism.tp=32", "parallelism.pp=2", "trainer.num_nodes=3"),
         "trainer.num_nodes", "world size 96 (3 node(s) x 32 ranks) does not divide by tp x pp = 64"),
    Case("dp_needs_more_nodes",
         (TRN1_8B, "model=llama2_7b", "training.seq_len=4096", "parallelism.tp=8", "parallelism.dp=16",
          "trainer.num_nodes=1"),
         "trainer.num_nodes", "set trainer.num_nodes=4"),
    Case("memory_does_not_fit",
         (P5_7B, "model=llama3_70b", "parallelism=ddp", "trainer.num_nodes=1"),
         "memory", "GiB per device"),
    # --- backend
    Case("zero1_on_gpu",
         (P5_7B, "parallelism.data_parallel=zero1"),
         "parallelism.data_parallel", "zero1 is NxD's optimizer sharding"),
    Case("fsdp_on_trainium",
         (TRN1_8B, "parallelism.data_parallel=fsdp"),
         "parallelism.data_parallel", "fsdp is a torch-engine strategy; on NxD (trn1)"),
    Case("compile_on_trainium",
         (TRN1_8B, "training.compile=true"),
         "training.compile", "torch.compile is for the torch engine; NxD (XLA)"),
    Case("native_stack_on_trainium1",
         (TRN1_8B, "neuron.stack=native"),
         "neuron.stack", "native (TorchNeuron) runs on Trn2 and Trn3 only"),
    Case("nxd_stack_on_gpu",
         (P5_7B, "neuron.stack=nxd"),
         "neuron.stack", "nxd is a Trainium stack"),
    Case("native_neff_cache_on_s3",
         (TRN1_8B, "instance=ml.trn2.48xlarge", "neuron.compile_cache_url=s3://bucket/neff"),
         "neuron.compile_cache_url", "TORCH_NEURONX_NEFF_CACHE_DIR) is a file-system path"),
    Case("nproc_per_node_on_trainium",
         (TRN1_8B, "trainer.nproc_per_node=16"),
         "trainer.nproc_per_node", "one rank per NeuronCore"),
    # --- composition: Hydra and the schema
    Case("unknown_instance",
         ("instance=ml.foo",),
         "instance=ml.foo", "no option 'ml.foo' in group 'instance'"),
    Case("unknown_key",
         ("training.foo=1",),
         "training.foo", "no such key"),
    Case("unknown_key_near_miss_gets_hint",
         ("training.max_step=5",),
         "training.max_step", "did you mean 'training.max_steps'?"),
    Case("added_key_is_not_silently_dropped",
         ("+training.max_step=5",),
         "training.max_step", "is not a field of the job schema"),
    Case("wrong_type",
         ("trainer.num_nodes=abc",),
         "trainer.num_nodes", "'abc' of type 'str' could not be converted to Integer"),
    Case("invalid_choice",
         ("parallelism.data_parallel=fsdp3",),
         "parallelism.data_parallel", "'fsdp3' is not one of auto, ddp, fsdp, hsdp, zero1, none"),
    Case("task_under_its_old_key",
         ("training.task=eval",),
         "training.task", "moved to the top level; write task=eval"),
    Case("negative_micro_batch",
         ("training.micro_batch_size=0",),
         "training.micro_batch_size", "must be at least 1, got 0"),
    # --- clusters
    Case("sagemaker_missing_role",
         (P5_7B, "cluster.sagemaker.role_arn=null"),
         "cluster.sagemaker.role_arn", "SageMaker needs an execution role"),
    Case("sagemaker_missing_image",
         (P5_7B, "cluster.image=null"),
         "cluster.image", "sagemaker jobs need a container image"),
    Case("sagemaker_missing_s3_output",
         (P5_7B, "cluster.sagemaker.s3_output_uri=null"),
         "cluster.sagemaker.s3_output_uri", "SageMaker needs an output location"),
    Case("sagemaker_spot_without_max_wait",
         (P5_7B, "cluster.sagemaker.use_spot=true"),
         "cluster.sagemaker.max_wait_hours", "with spot it must be set"),
    Case("sagemaker_spot_without_checkpoint_uri",
         (P5_7B, "cluster.sagemaker.use_spot=true", "cluster.sagemaker.max_wait_hours=240",
          "cluster.sagemaker.s3_checkpoint_uri=null"),
         "cluster.sagemaker.s3_checkpoint_uri", "spot training needs checkpoints synced to S3"),
    Case("local_cluster_multi_node",
         ("trainer.num_nodes=2", "training.global_batch_size=16"),
         "trainer.num_nodes", "a local run uses this one machine"),
    Case("multi_node_without_efa",
         (P5_7B, "instance.efa_interfaces=0"),
         "trainer.num_nodes", "has no EFA, so multi-node jobs fail"),
    Case("slurm_signal_leaves_no_training_time",
         ("cluster=slurm", "instance=cpu", "cluster.slurm.time_limit=00:05:00"),
         "cluster.slurm.signal_before_s", "leaves no training time within the time limit 00:05:00"),
    Case("slurm_python_not_absolute",
         ("cluster=slurm", "instance=cpu", "cluster.slurm.python=python3"),
         "cluster.slurm.python", "must be an absolute path, the same on every node"),
    Case("slurm_rendezvous_port_out_of_range",
         ("cluster=slurm", "instance=cpu", "cluster.slurm.rendezvous_port=80"),
         "cluster.slurm.rendezvous_port", "must be a port from 1024 to 65535"),
    Case("cpu_instance_on_sagemaker",
         ("cluster=sagemaker", *cluster_inputs("sagemaker", "cpt")),
         "instance", "local_cpu is a CPU node type, which cluster=sagemaker does not run"),
    Case("laptop_path_on_eks",
         ("cluster=eks", "instance=cpu", "cluster.eks.node_selector={kubernetes.io/os: linux}",
          *cluster_inputs("eks", "cpt")[1:], f"training.data.train_path={PROJECT_ROOT}/data/sample/corpus/train.jsonl"),
         "training.data.train_path", "is on this machine, not on the cluster's shared storage"),
    Case("sagemaker_channel_path_on_slurm",
         ("cluster=slurm", "instance=cpu", *cluster_inputs("slurm", "cpt")[1:],
          "training.data.train_path=/opt/ml/input/data/train"),
         "training.data.train_path", "is a SageMaker input-channel path, which cluster=slurm does not mount"),
    # --- local data
    Case("missing_local_train_path",
         ("training.data.train_path=/nonexistent",),
         "training.data.train_path", "/nonexistent does not exist"),
    Case("missing_local_tokenizer",
         ("training.data.tokenizer_path=/nonexistent",),
         "training.data.tokenizer_path", "has no tokenizer.json"),
    Case("model_vocab_smaller_than_tokenizer",
         ("model.vocab_size=1000",),
         "model.vocab_size", "1000 is smaller than the tokenizer's 2048 tokens"),
]


def _error_lines(stderr: str) -> list[tuple[str, str]]:
    return ERROR_LINE.findall(stderr)


def assert_usage_error(result, field: str, phrase: str, count: int | None) -> None:
    """Exit 2, no traceback, a header, and an `error: <field>:` line containing phrase."""
    stderr = result.stderr
    assert result.returncode == 2, f"rc={result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{stderr}"
    assert "Traceback" not in stderr and "Traceback" not in result.stdout, stderr
    header = HEADER.search(stderr)
    assert header, stderr
    lines = _error_lines(stderr)
    assert int(header.group(1)) == len(lines), stderr
    if count is not None:
        assert len(lines) == count, stderr
    matching = [message for key, message in lines if key == field]
    assert matching, f"no 'error: {field}:' line in:\n{stderr}"
    assert any(phrase in message for message in matching), f"no '{phrase}' for {field} in:\n{stderr}"


def test_at_least_22_distinct_cases():
    assert len({c.id for c in CASES}) == len(CASES) >= 22
    assert len({c.overrides for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_config_is_reported_without_running(case, cli, tmp_path):
    result = cli(*case.overrides)
    assert_usage_error(result, case.field, case.phrase, case.count)
    assert not (tmp_path / "out" / "plan.json").exists(), "a rejected job must not write plan.json"


def test_three_independent_problems_are_reported_together(cli):
    result = cli("parallelism.sequence_parallel=true", "training.seq_len=4096",
                 "training.data.train_path=/nonexistent")
    assert_usage_error(result, "parallelism.sequence_parallel", "needs tp > 1", count=3)
    assert_usage_error(result, "training.seq_len", "exceeds tiny_llama's max_position_embeddings", count=3)
    assert_usage_error(result, "training.data.train_path", "/nonexistent does not exist", count=3)
    assert "llm-launch: 3 problems found before anything ran:" in result.stderr


def test_three_bad_overrides_are_reported_together(cli):
    result = cli("training.foo=1", "trainer.num_nodes=abc", "instance=ml.foo")
    assert_usage_error(result, "training.foo", "no such key", count=3)
    assert_usage_error(result, "trainer.num_nodes", "could not be converted to Integer", count=3)
    assert_usage_error(result, "instance=ml.foo", "no option 'ml.foo'", count=3)


@pytest.mark.parametrize("name, phrase", [
    ("a" * 300, "output_dir: a folder name in outputs/" + "a" * 300),
    ("..", "job_name: '..' starts with '.'"),
], ids=["longer_than_a_folder_name", "dot_dot"])
def test_job_name_with_the_default_output_folder_writes_nothing(name, phrase, tmp_path):
    """Without output_dir the folder is outputs/<job_name> under the current folder: a bad name stops there."""
    cmd = [sys.executable, "-m", "llm_launch.launcher.cli", "action=plan", f"job_name={name}"]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert phrase in result.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) in ([], ["outputs"]), "nothing but the empty outputs/ folder"
    assert not list(tmp_path.rglob("*.json"))


@pytest.mark.parametrize("override, meant", [
    ("instance=p5.48xlarge", "instance=ml.p5.48xlarge"),  # the EC2 name people type on EKS and Slurm
    ("recipe=llama3_8b_cpt_trn", "recipe=llama3_8b_cpt_trn1"),
    ("recipe=tiny_lama_sft", "recipe=tiny_llama_sft"),
], ids=["ec2_instance_name", "recipe_prefix", "recipe_typo"])
def test_a_mistyped_option_gets_did_you_mean(cli, override, meant):
    result = cli(override)
    assert_usage_error(result, override, f"did you mean {meant}?", 1)


def test_help_names_suggest_and_own_recipes():
    cmd = [sys.executable, "-m", "llm_launch.launcher.cli", "--help"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "action=suggest" in result.stdout and "suggest (rank" in result.stdout
    assert "--config-dir <dir> recipe=<name>" in result.stdout


def test_an_own_recipe_in_config_dir_is_found(tmp_path):
    """What --help and docs/recipes say: <dir>/recipe/<name>.yaml runs with --config-dir <dir> recipe=<name>."""
    (tmp_path / "recipe").mkdir()
    text = (PROJECT_ROOT / "recipes" / "tiny_llama_sft.yaml").read_text().replace("job_name: tiny-llama-sft",
                                                                                   "job_name: my-own-sft")
    (tmp_path / "recipe" / "my_sft.yaml").write_text(text)
    cmd = [sys.executable, "-m", "llm_launch.launcher.cli", "--config-dir", str(tmp_path), "recipe=my_sft",
           "action=plan", f"output_dir={tmp_path / 'out'}"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Plan for my-own-sft" in result.stdout and (tmp_path / "out" / "plan.json").is_file()
