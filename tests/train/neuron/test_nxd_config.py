"""The NxD config built from each Trainium recipe, field by field."""

from __future__ import annotations

from composed_job import recipe_job
from llm_launch.launcher.validate import validate
from llm_launch.train.neuron.nxd_config import NxdSettings, PipelineSettings, nxd_settings


def test_llama3_8b_trn1():
    job = recipe_job("llama3_8b_cpt_trn1", "parallelism.tp=32")  # NxDT's hf_llama3_8B_config layout
    assert nxd_settings(job) == NxdSettings(
        tensor_parallel_size=32, pipeline_parallel_size=1, data_parallel_size=4, sequence_parallel=True,
        zero_one_enabled=True, grad_clipping=True, max_grad_norm=1.0, activation_checkpoint="decoder_layer",
        precision_mode="bf16SR", use_master_weights=False, use_fp32_grad_acc=False, stochastic_rounding=True,
        param_dtype="bfloat16", kv_replicator=4, hw="trn1", fused_qkv=False, lnc_size=1,
        sequential_move_factor=11, pipeline=None)


def test_llama2_70b_trn1_pipeline():
    job = recipe_job("llama2_70b_cpt_trn1")
    settings = nxd_settings(job)
    assert (settings.tensor_parallel_size, settings.pipeline_parallel_size, settings.data_parallel_size) == (8, 8, 16)
    assert settings.kv_replicator == 1  # 8 KV heads = tp 8
    assert settings.pipeline == PipelineSettings(
        num_microbatches=32, virtual_pipeline_size=1,
        pipeline_cuts=tuple(f"model.layers.{i}" for i in (9, 19, 29, 39, 49, 59, 69)), use_zero1_optimizer=True)
    kwargs = settings.nxd_kwargs(decoder_layer_cls=object, core_attention_cls=int, leaf_module_cls=[float])
    assert kwargs["pipeline_config"]["transformer_layer_cls"] is object
    assert kwargs["pipeline_config"]["pipeline_cuts"][0] == "model.layers.9"
    assert kwargs["pipeline_config"]["num_microbatches"] == 32
    assert kwargs["pipeline_config"]["leaf_module_cls"] == ["float"]
    assert kwargs["optimizer_config"] == {"zero_one_enabled": True, "grad_clipping": True, "max_grad_norm": 1.0}
    assert kwargs["activation_checkpoint_config"] is object
    assert kwargs["sequence_parallel"] is True
    assert kwargs["mixed_precision_config"] == {"use_master_weights": False, "use_fp32_grad_acc": False,
                                                "use_master_weights_in_ckpt": False}
    assert kwargs["lnc_size"] == 1 and kwargs["tensor_parallel_size"] == 8 and kwargs["pipeline_parallel_size"] == 8


def test_llama3_8b_on_trn2_like_nxdt_trn2_config():
    job = recipe_job("llama3_8b_cpt_trn1", "instance=ml.trn2.48xlarge", "neuron.stack=nxd",
                     "parallelism.tp=16", "neuron.stochastic_rounding=false", "parallelism.activation_checkpointing=selective",
                     "neuron.fused_qkv=true", "trainer.num_nodes=2")
    findings, _ = validate(job)
    assert [str(p) for p in findings.problems if not str(p).startswith("cluster.")] == []
    settings = nxd_settings(job)
    assert settings.hw == "trn2" and settings.lnc_size == 2
    assert settings.kv_replicator == 2  # 8 KV heads x 2 = tp 16, as NxDT's trn2 Llama 3 8B config
    assert settings.data_parallel_size == 8  # 2 nodes x 64 logical cores / 16
    assert settings.precision_mode == "mixed_precision"
    assert settings.use_master_weights and settings.use_fp32_grad_acc  # allowed: ZeRO-1 is on
    assert settings.fused_qkv and settings.activation_checkpoint == "core_attention"
    assert settings.nxd_kwargs(core_attention_cls=int)["activation_checkpoint_config"] is int


def test_fp32_and_no_clipping():
    job = recipe_job("llama3_8b_cpt_trn1", "training.precision=fp32", "training.optimizer.grad_clip=0",
                     "parallelism.activation_checkpointing=none")
    settings = nxd_settings(job)
    assert (settings.precision_mode, settings.param_dtype, settings.stochastic_rounding) == ("fp32", "float32", False)
    assert settings.grad_clipping is False and settings.activation_checkpoint is None
    assert settings.nxd_kwargs()["activation_checkpoint_config"] is None


def test_eval_task_plans_on_trainium():
    """task=eval runs on the Neuron backend (the loop's evaluate over NxD), so the plan accepts it."""
    job = recipe_job("llama3_8b_cpt_trn1", "task=eval", "training.data.valid_path=/opt/ml/input/data/train/valid.jsonl")
    findings, _ = validate(job)
    assert [str(p) for p in findings.problems if not str(p).startswith("cluster.")] == []


def _pretrained_errors(tmp_path, layout: dict | None, *overrides: str) -> list[str]:
    """Plan problems about model.pretrained_path for a trn1 job run here (where its files are checked) pointed at
    a folder shaped like hf-to-nxd's output
    (layout None: a Hugging Face folder instead)."""
    import json

    from llm_launch.train.model import hf_config

    folder = tmp_path / "pretrained"
    (folder / "model").mkdir(parents=True)
    hf_config(recipe_job("llama3_8b_cpt_trn1").model).save_pretrained(folder)  # hf-to-nxd copies the model's
    if layout is None:
        (folder / "model.safetensors").write_bytes(b"")
    else:
        (folder / "model" / "dp_rank_00_tp_rank_00_pp_rank_00.pt").write_bytes(b"")
        (folder / "nxd_layout.json").write_text(json.dumps(layout))
    job = recipe_job("llama3_8b_cpt_trn1", "cluster=local", f"model.pretrained_path={folder}", *overrides)
    findings, _ = validate(job)
    return [str(p) for p in findings.problems if "model.pretrained_path" in str(p)]


def test_trainium_pretrained_path_is_an_nxd_checkpoint_in_the_jobs_layout(tmp_path):
    from llm_launch.launcher.nxd_layout import layout_record

    assert _pretrained_errors(tmp_path, layout_record(recipe_job("llama3_8b_cpt_trn1", "parallelism.tp=32")),
                              "parallelism.tp=32") == []


def test_trainium_pretrained_path_in_another_layout_is_refused(tmp_path):
    from llm_launch.launcher.nxd_layout import layout_record

    errors = _pretrained_errors(tmp_path, layout_record(recipe_job("llama3_8b_cpt_trn1", "parallelism.tp=8")),
                                "parallelism.tp=32")
    assert len(errors) == 1 and "tp=8 (this job: 32)" in errors[0] and "hf-to-nxd" in errors[0], errors


def test_trainium_pretrained_path_to_a_hugging_face_folder_names_the_conversion(tmp_path):
    errors = _pretrained_errors(tmp_path, None)
    assert len(errors) == 1 and "holds no NxD shards" in errors[0] and "hf-to-nxd" in errors[0], errors
