"""Checks a whole job before anything runs or costs money; every problem is collected.

Each config section checks its own ranges (llm_launch.launcher.config.checks); this module holds the checks
that span sections. Each check adds a Problem naming the field at fault and what would fix it.
Checks that need sound numbers (positive degrees and batch sizes) run only once those are sound,
so one bad value does not cascade into a page of follow-on errors.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

from llm_launch.launcher.clusters import cluster_of
from llm_launch.launcher.config.checks import Checks
from llm_launch.launcher.config.schema import DataParallel, JobConfig
from llm_launch.launcher.data_inputs import check_data_inputs, tokenizer_size
from llm_launch.launcher.data_prep import (
    DataPrepPlan,
    make_data_prep_plan,
    reach_problems,
    resolve_data_prep,
    s3_prefix_problem,
    s3_source_problem,
    work_dir,
)
from llm_launch.launcher.devices import engine_of, is_trainium, native_neuron, uses_nxd
from llm_launch.launcher.dialect import backend_modes
from llm_launch.launcher.elastic import check_elastic
from llm_launch.launcher.local_files import nxd_checkpoint_problems, pretrained_problems, tokenizer_problems
from llm_launch.launcher.memory import GIB, MemoryEstimate
from llm_launch.launcher.plan import Plan, make_plan
from llm_launch.launcher.preference_checks import check_preference_job
from llm_launch.launcher.pretrained_config import (
    CHECKED_FIELDS,
    PretrainedConfigError,
    channel_config,
    differences,
    file_fields,
)
from llm_launch.launcher.problems import Findings, Problem
from llm_launch.launcher.resilience import check_async_checkpoints
from llm_launch.launcher.tasks import TASKS
from llm_launch.launcher.topology import (
    catalog_ranks_per_node,
    data_parallel_split,
    ranks_per_accelerator,
    topology_of,
)

SHARED_SECTIONS = ("instance", "cluster", "trainer", "plan")
"""Sections every task reads."""


def _divisors(n: int, limit: int | None = None) -> str:
    values = [d for d in range(1, n + 1) if n % d == 0 and (limit is None or d <= limit)]
    return ", ".join(str(v) for v in values)


def _check_heads_and_layers(job: JobConfig, out: Findings) -> None:
    model, par = job.model, job.parallelism
    tp, heads, kv = par.tp, model.num_attention_heads, model.num_key_value_heads
    if heads % tp:
        out.error("parallelism.tp", f"tp={tp} does not divide the {heads} attention heads of {model.name}; "
                  f"use one of {_divisors(heads)}")
    if uses_nxd(job):
        if kv % tp and tp % kv:
            out.error("parallelism.tp", f"tp={tp} must divide the {kv} KV heads or be a multiple of them "
                      "(Neuron replicates KV heads up to tp)")
        needed = tp // kv if tp > kv and tp % kv == 0 else 1
        if par.kv_replicator is not None and par.kv_replicator != needed and not (kv % tp and tp % kv):
            out.error("parallelism.kv_replicator", f"{par.kv_replicator} does not give kv_heads x kv_replicator "
                      f"= tp ({kv} x ? = {tp}); set parallelism.kv_replicator={needed} or leave it null")
        if model.vocab_size % tp:
            out.error("parallelism.tp", f"vocab_size {model.vocab_size} does not divide by tp={tp}; NxD's "
                      "vocab-parallel embedding needs it; pad the vocabulary or pick another tp")
        if par.pp > 1 and model.tie_word_embeddings:
            out.error("parallelism.pp", "tied embeddings are not supported with pipeline parallelism on Neuron; "
                      "use pp=1")
    else:
        if kv % tp:
            out.error("parallelism.tp", f"tp={tp} does not divide the {kv} KV heads of {model.name}; KV-head "
                      f"replication exists only on the NxD stack; use tp in {_divisors(kv)}")
        if par.kv_replicator not in (None, 1):
            out.error("parallelism.kv_replicator", "is an NxD (trn1) setting; leave it null on this instance")
    chunks = par.pp * par.virtual_pp
    if model.num_layers % chunks:
        what = f"pp={par.pp}" if par.virtual_pp == 1 else f"pp x virtual_pp = {chunks}"
        out.error("parallelism.pp", f"{what} does not divide the {model.num_layers} layers of {model.name}; "
                  f"use one of {_divisors(model.num_layers, 64)}")


def _check_seq_len(job: JobConfig, out: Findings) -> None:
    """Rows no longer than the model's positions (and, on GPUs, its sliding window)."""
    model, seq_len = job.model, job.training.seq_len
    window = model.sliding_window
    if window is not None and seq_len > window and not uses_nxd(job):
        out.error("training.seq_len", f"{seq_len} exceeds {model.name}'s sliding_window {window}; the "
                  "engine attends causally over the whole row, so keep training.seq_len <= sliding_window")
    if seq_len > model.max_position_embeddings:
        out.error("training.seq_len", f"{seq_len} exceeds {model.name}'s "
                  f"max_position_embeddings {model.max_position_embeddings}; lower training.seq_len")


def _costly(job: JobConfig, out: Findings, key: str, message: str) -> None:
    """A setting that wastes a paid run but serves a quick local trial (a 5-step run under the recipe's warm-up,
    LoRA on a random tiny model): an error on remote clusters, a warning on this machine."""
    if cluster_of(job).runs_here:
        out.warn(key, message)
    else:
        out.error(key, message)


def _check_stack(job: JobConfig, out: Findings) -> None:
    """neuron.stack against the instance: native needs TorchNeuron (trn2/trn3), nxd needs Trainium."""
    stack, inst = job.neuron.stack, job.instance
    if stack == "native" and inst.accelerator == "trainium1":
        out.error("neuron.stack", f"native (TorchNeuron) runs on Trn2 and Trn3 only; {inst.name} is Trainium 1: use "
                  "neuron.stack=nxd (or auto), or a trn2 instance (docs/trainium.md)")
    elif stack == "nxd" and not is_trainium(job):
        out.error("neuron.stack", f"nxd is a Trainium stack; {inst.name} trains on the torch engine: leave "
                  "neuron.stack=auto")
    elif stack == "nxd" and inst.accelerator != "trainium1":
        out.warn("neuron.stack", f"nxd on {inst.name}: NeuronX Distributed training is end of support (last image: "
                 "Neuron 2.30); the default on this instance is native (TorchNeuron)")
    if native_neuron(job) and job.neuron.precompile:
        out.warn("neuron.precompile", "neuron_parallel_compile traces XLA graphs (NxD); the native stack compiles "
                 "just in time into TORCH_NEURONX_NEFF_CACHE_DIR, so no precompile step is rendered")
    if native_neuron(job) and (job.neuron.compile_cache_url or "").startswith("s3://"):
        out.error("neuron.compile_cache_url", "TorchNeuron's NEFF cache (TORCH_NEURONX_NEFF_CACHE_DIR) is a file-system "
                  "path; point it at shared storage (FSx) or leave it null")


def _check_backend(job: JobConfig, out: Findings) -> None:
    inst, par, acc = job.instance, job.parallelism, job.instance.accelerator
    trainium, nxd = is_trainium(job), uses_nxd(job)
    if job.neuron.monitor and not trainium:
        out.error("neuron.monitor", f"neuron-monitor watches NeuronCores; {inst.name} has none: use a Trainium "
                  "instance or set neuron.monitor=false")
    if par.data_parallel not in backend_modes(job):
        if nxd:
            out.error("parallelism.data_parallel", f"{par.data_parallel} is a torch-engine strategy; on NxD (trn1) use "
                      "auto (ZeRO-1) or ddp")
        else:
            out.error("parallelism.data_parallel", f"{par.data_parallel} is NxD's optimizer sharding (trn1); on this "
                      "instance's torch engine use auto (FSDP2), hsdp or ddp")
    nproc = job.trainer.nproc_per_node
    if trainium and nproc is not None and nproc != catalog_ranks_per_node(inst):
        out.error("trainer.nproc_per_node", f"Trainium runs one rank per NeuronCore: {inst.name} has "
                  f"{catalog_ranks_per_node(inst)}; leave it null (on trn2 set instance.logical_core_config)")
    devices = inst.accelerators_per_node
    if acc == "nvidia" and nproc is not None and nproc > devices:
        out.error("trainer.nproc_per_node", f"{nproc} ranks but {inst.name} has {devices} GPUs; use at most "
                  f"{devices} (one rank per GPU)")
    if not TASKS[job.task].trains_model:
        return
    lora = job.training.lora
    if lora.enabled and not job.model.pretrained_path:
        _costly(job, out, "model.pretrained_path", "LoRA adapts a trained model, and none is set (the frozen base "
                "would stay random); point it at a Hugging Face checkpoint folder or set training.lora.enabled=false")
    warmup = job.training.schedule.warmup_steps
    if warmup > job.training.max_steps:
        _costly(job, out, "training.schedule.warmup_steps", f"{warmup} exceeds training.max_steps "
                f"{job.training.max_steps}: the learning rate never reaches its peak; use at most "
                f"{job.training.max_steps}")
    if nxd and par.pp > 1 and par.pp_schedule == "gpipe":
        out.error("parallelism.pp_schedule", "NxD pipelines run 1F1B; use 1f1b or interleaved_1f1b")
    if nxd and (job.model.family in ("qwen2", "qwen3") or job.model.attention_bias):
        what = {"qwen2": "q/k/v biases (Qwen2)", "qwen3": "QK-norm (Qwen3)"}.get(job.model.family, "attention biases")
        key = "model.attention_bias" if job.model.family not in ("qwen2", "qwen3") else "model.family"
        out.error(key, f"{job.model.name} has {what}, which the NxD backend's Llama modules (train/neuron/llama.py) "
                  "cannot express; train it on a GPU instance or on trn2 (the torch engine)")
    if nxd and job.training.compile:
        out.error("training.compile", "torch.compile is for the torch engine; NxD (XLA) compiles its graphs itself; "
                  "set false")
    per_chip = ranks_per_accelerator(inst)
    if native_neuron(job) and par.tp > per_chip:
        out.warn("parallelism.tp", f"tp={par.tp} spans {par.tp // per_chip} Trainium chips; TorchNeuron's best practice "
                 f"keeps tensor parallelism within one chip (tp <= {per_chip} at this LNC)")
    lora = job.training.lora
    if lora.enabled and par.tp > 1:
        out.error("training.lora.enabled", "LoRA adapters are not tensor-parallel in this engine; use "
                  "parallelism.tp=1 (FSDP shards the frozen base) or train every weight")
    if lora.enabled and nxd:
        out.error("training.lora.enabled", "LoRA runs on the torch engine only, not on NxD (trn1); use a trn2/trn3 or "
                  "GPU instance")
    chunk = job.training.loss_chunk_tokens
    if chunk > 0 and (par.tp > 1 or par.pp > 1 or nxd or job.task == "dpo"):
        layout = "the NxD backend" if nxd else "task=dpo" if job.task == "dpo" else f"tp={par.tp}, pp={par.pp}"
        out.error("training.loss_chunk_tokens", f"the chunked loss runs on the torch engine with one stage and no "
                  f"tensor parallelism, for token cross-entropy tasks; not with {layout}: set loss_chunk_tokens=0 "
                  "(or parallelism.tp=1 and pp=1)")
    if job.training.data.document_masking and (par.pp > 1 or nxd):
        out.error("training.data.document_masking", "works without pipeline parallelism on the torch engine only; set "
                  "parallelism.pp=1 or document_masking=false")
    if not nxd and par.pp > 1 and job.model.tie_word_embeddings:
        out.error("parallelism.pp", "tied input and output embeddings live on the first and last stage; "
                  "use pp=1 for this model")
    if job.training.precision == "fp8":
        _check_fp8(job, out, nxd)
    if acc == "cpu" and job.training.precision == "bf16":
        out.warn("training.precision", "bf16 on CPU is about 12x slower than fp32 on these machines")
    if par.data_parallel == "hsdp" and job.trainer.num_nodes == 1:
        out.warn("parallelism.data_parallel", "hsdp on one node shards like fsdp")
    elif par.data_parallel == "hsdp":
        topo = topology_of(job)
        replicate, shard = data_parallel_split("hsdp", topo)
        if shard == 1 and replicate > 1:
            out.warn("parallelism.data_parallel", f"hsdp with tp {topo.tp} and {topo.ranks_per_node} ranks per node "
                     "leaves no data-parallel rank to shard over inside a node: every replica holds the whole training "
                     f"state (pure replication over {replicate}); use fsdp to shard across nodes, or a smaller tp")


def _check_fp8(job: JobConfig, out: Findings, nxd: bool) -> None:
    """training.precision=fp8 runs torchao's float8 linear layers on FP8 tensor cores (H100/H200) with FSDP2 or DDP."""
    inst, par = job.instance, job.parallelism
    if inst.accelerator != "nvidia" or nxd:
        out.error("training.precision", f"fp8 training runs on NVIDIA H100/H200 GPUs (torchao float8); {inst.name} has "
                  f"{inst.accelerator_name or inst.accelerator}; use bf16 or an ml.p5/p5e/p5en instance")
    elif not inst.fp8_tflops_per_accelerator:
        out.error("training.precision", f"fp8 needs FP8 tensor cores (H100/H200: ml.p5, p5e, p5en); {inst.name} has "
                  f"{inst.accelerator_name or 'a GPU'} without an FP8 figure in the catalog "
                  "(instance.fp8_tflops_per_accelerator); use bf16")
    elif par.tp > 1 or par.pp > 1 or job.training.lora.enabled:
        out.error("training.precision", "fp8 is wired for FSDP2/DDP without tensor or pipeline parallelism and "
                  "without LoRA; set parallelism.tp=1, pp=1 and lora.enabled=false, or use bf16")


def _check_task_data(job: JobConfig, out: Findings) -> None:
    """What the task needs from its model and tokenizer, wherever it runs (data inputs: llm_launch.launcher.data_inputs)."""
    data = job.training.data
    for key, path in (("training.data.tokenizer_path", data.tokenizer_path),
                      ("model.pretrained_path", job.model.pretrained_path)):
        if path and path.startswith("s3://") and job.cluster.kind != "eks":  # EKS pods copy it (train/s3_folders.py)
            out.error(key, f"{path}: the job reads this folder from a file system, not from S3; on SageMaker set "
                      "cluster.sagemaker.channels.<name>=<that URI> and point this at /opt/ml/input/data/<name>; "
                      "on EKS the pods copy it at start; elsewhere copy it to the shared file system (FSx) and point "
                      "this there")
    if job.task == "eval":
        if data.valid_path is None:
            out.error("training.data.valid_path", "eval measures loss on held-out data and none is set; point it at "
                      "packed shards or a .jsonl/.txt corpus")
        checkpoints = Path(job.training.checkpoint.dir or "")
        if not job.model.pretrained_path and cluster_of(job).runs_here and not any(checkpoints.glob("step_*")):
            out.error("model.pretrained_path", f"eval needs a model: none is set and {checkpoints} holds no "
                      "checkpoint; point model.pretrained_path at a Hugging Face folder or training.checkpoint.dir "
                      "at a run's checkpoints")


def _check_local_paths(job: JobConfig, out: Findings) -> None:
    """Data and tokenizer must exist where the job runs here (remote paths are checked by the job)."""
    data = job.training.data
    for key, value in (("training.data.train_path", data.train_path), ("training.data.valid_path", data.valid_path)):
        if value is not None and not value.startswith("s3://") and not Path(value).exists():
            out.error(key, f"{value} does not exist; point it at packed shards, a save_to_disk folder, Parquet, "
                      "JSONL or a .txt corpus")
    tokenizer = Path(data.tokenizer_path)
    if data.tokenizer_path.startswith("s3://"):
        pass  # refused by _check_task_data
    elif not (tokenizer / "tokenizer.json").is_file():
        out.error("training.data.tokenizer_path", f"{tokenizer} has no tokenizer.json; point it at a Hugging Face "
                  "tokenizer folder")
    elif problems := tokenizer_problems(tokenizer):
        for message in problems:
            out.error("training.data.tokenizer_path", message)
    else:
        size = tokenizer_size(tokenizer)
        if size is not None and size > job.model.vocab_size:
            out.error("model.vocab_size", f"{job.model.vocab_size} is smaller than the tokenizer's {size} tokens; "
                      "use a model whose vocab covers the tokenizer")
    pretrained = job.model.pretrained_path
    if pretrained is not None and pretrained.startswith("s3://"):
        pass  # refused by _check_task_data
    elif pretrained is not None and not (Path(pretrained) / "config.json").is_file():
        out.error("model.pretrained_path", f"{pretrained} has no config.json; point it at a Hugging Face "
                  "checkpoint folder or set it to null")
    elif pretrained is not None and uses_nxd(job):
        for message in nxd_checkpoint_problems(Path(pretrained), job):
            out.error("model.pretrained_path", message)
    elif pretrained is not None:
        for message in pretrained_problems(Path(pretrained)):
            out.error("model.pretrained_path", message)


def _check_pretrained_channel(job: JobConfig, out: Findings) -> None:
    """A SageMaker job's pretrained model in a channel: its config.json read from the channel's S3 prefix where this
    machine's credentials allow, and the model section checked against it; otherwise the job checks it at start."""
    path = job.model.pretrained_path
    if not path or job.cluster.kind != "sagemaker" or not path.startswith("/opt/ml/input/data/"):
        return
    try:
        config, where = channel_config(path, job.cluster.sagemaker.channels, job.cluster.region)
        if config is None:
            out.warn("model.pretrained_path", f"config.json not checked before the job: {where}; the job checks the "
                     "model section against it when it starts")
            return
        recipe = {field: getattr(job.model, field) for field in CHECKED_FIELDS}
        for key, message in differences(recipe, file_fields(config, where), where, job.model.name):
            out.error(key, message)
    except PretrainedConfigError as exc:
        out.error("model.pretrained_path", str(exc))


def _check_tracking(job: JobConfig, out: Findings) -> None:
    """Trackers of a job that runs here: client installed, server reachable (remote jobs check where they run)."""
    from llm_launch.launcher.tracking_checks import tracking_problems

    for key, message in tracking_problems(job):
        if job.tracking.required:
            out.error(key, message)
        else:
            out.warn(key, f"{message}; the job trains without it (tracking.required=false)")


def _check_data_prep(job: JobConfig, out: Findings) -> None:
    """What a prepare job needs beyond its section's own ranges: sources, the resolved seq_len and tokenizer, and
    (where this machine runs the job) paths and pip packages; a remote job checks its packages when it starts."""
    from llm_launch.launcher.data_sources import missing_packages

    prep = resolve_data_prep(job)
    runs_here = cluster_of(job).runs_here
    if not prep.sources:
        out.error("data_prep.sources", "no sources; add at least one, e.g. "
                  "data_prep.sources='[{name: web, path: /data/web.jsonl}]' (see recipes/prepare_sample.yaml)")
    if job.data_prep.seq_len is None and prep.seq_len < 2:
        out.error("data_prep.seq_len", f"rows of training.seq_len={prep.seq_len} token are too short; set "
                  "data_prep.seq_len=<2 or more>")
    for key, message in reach_problems(job, cluster_of(job).shared_storage(job)):
        out.error(key, message)
    for i, source in enumerate(prep.sources):
        if source.path.startswith("s3://") and (message := s3_source_problem(source.path, source.format,
                                                                             job.cluster.region)):
            if runs_here:
                out.error(f"data_prep.sources[{i}].path", message)
            else:  # as for training data: the job's own credentials may reach what this machine's cannot
                out.warn(f"data_prep.sources[{i}].path", f"not checked before the job: {message}")
    if not runs_here:
        return
    work = work_dir(prep)
    if work.startswith("s3://"):
        message = s3_prefix_problem(work)
        if message:
            out.error("data_prep.output.work_dir", message)
    for i, source in enumerate(prep.sources):
        if not source.path.startswith("s3://") and not Path(source.path).exists():
            out.error(f"data_prep.sources[{i}].path", f"{source.path} does not exist; point it at a file or a folder "
                      f"of {source.format} files")
    out.problems.extend(missing_packages(prep))
    tokenizer = Path(prep.tokenizer_path)
    key = "data_prep.tokenizer_path" if job.data_prep.tokenizer_path else "training.data.tokenizer_path"
    if not all((tokenizer / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")):
        out.error(key, f"{tokenizer} has no tokenizer.json and tokenizer_config.json; point it at a Hugging "
                  "Face tokenizer folder")
    else:
        for message in tokenizer_problems(tokenizer):
            out.error(key, message)


def _check_layout(job: JobConfig, plan: Plan, out: Findings) -> None:
    par, train, inst = job.parallelism, job.training, job.instance
    ranks, world, mp = plan.ranks_per_node, plan.world_size, par.tp * par.pp
    if par.tp > ranks or ranks % par.tp:
        out.error("parallelism.tp", f"tp={par.tp} must stay within one node: {inst.name} runs {ranks} ranks per "
                  f"node; use one of {_divisors(ranks)}")
    if world % mp:
        out.error("trainer.num_nodes", f"world size {world} ({plan.num_nodes} node(s) x {ranks} ranks) does not "
                  f"divide by tp x pp = {mp}; use a node count whose ranks are a multiple of {mp}")
        return
    if par.dp is not None and par.dp * mp != world:
        needed = par.dp * mp
        nodes = math.ceil(needed / ranks)
        fix = (f"set trainer.num_nodes={nodes}" if nodes * ranks == needed
               else f"{needed} ranks is not a whole number of {ranks}-rank nodes; change dp, tp or pp")
        out.error("trainer.num_nodes", f"dp={par.dp} x tp={par.tp} x pp={par.pp} needs {needed} ranks but "
                  f"{plan.num_nodes} node(s) of {inst.name} give {world}; {fix}")
    if par.data_parallel == DataParallel.none and plan.dp > 1:
        out.error("parallelism.data_parallel", f"none would leave the {plan.dp} data-parallel replicas training apart "
                  "(no gradient sync); use auto or ddp, or a layout with dp = 1")
    if par.sequence_parallel and par.tp > 1 and train.seq_len % par.tp:
        out.error("training.seq_len", f"{train.seq_len} does not divide by tp={par.tp}: sequence parallelism splits "
                  f"each row into tp slices; use a multiple of {par.tp}")
    per_pass = train.micro_batch_size * plan.dp
    if train.global_batch_size % per_pass:
        lower = train.global_batch_size // per_pass * per_pass
        options = " or ".join(str(v) for v in (lower, lower + per_pass) if v > 0)
        out.error("training.global_batch_size", f"{train.global_batch_size} does not divide by micro_batch_size "
                  f"{train.micro_batch_size} x dp {plan.dp} = {per_pass}; use a multiple such as {options}")
    elif par.pp > 1:
        local = train.global_batch_size // plan.dp
        micro = plan.pipeline_microbatches
        if local % micro:
            out.error("parallelism.pp_microbatches", f"{micro} does not divide the {local} samples each replica "
                      "takes per step; pick a divisor or leave it null")
        elif par.pp_schedule == "interleaved_1f1b" and micro % par.pp:
            out.error("parallelism.pp_microbatches", f"interleaved_1f1b needs microbatches ({micro}) to be a "
                      f"multiple of pp={par.pp}")
        elif micro < par.pp:
            out.warn("parallelism.pp_microbatches", f"{micro} microbatches for {par.pp} stages leaves the "
                     "pipeline mostly idle; raise the global batch or pp_microbatches")


MAX_NODES_SEARCHED = 512


def smallest_fitting_node_count(job: JobConfig) -> int | None:
    """The fewest nodes (above the job's) whose ranks divide by tp x pp and whose memory estimate fits, or None when
    no node count up to MAX_NODES_SEARCHED does (more sharding over data parallelism cannot make it fit)."""
    par = job.parallelism
    for nodes in range(job.trainer.num_nodes + 1, MAX_NODES_SEARCHED + 1):
        trial = replace(job, trainer=replace(job.trainer, num_nodes=nodes), parallelism=replace(par, dp=None))
        plan = make_plan(trial)
        if plan.world_size % (par.tp * par.pp) == 0 and plan.memory.fits:
            return nodes
    return None


def _check_memory(plan: Plan, job: JobConfig, out: Findings) -> None:
    mem = plan.memory
    if mem.fits:
        return
    parts = ", ".join(f"{name} {getattr(mem, name) / GIB:.1f}"
                      for name in ("weights", "gradients", "optimizer", "activations"))
    fixes = []
    if job.parallelism.activation_checkpointing != "full":
        fixes.append("parallelism.activation_checkpointing=full")
    if job.training.micro_batch_size > 1:
        fixes.append("a smaller training.micro_batch_size")
    nodes = smallest_fitting_node_count(job) if job.cluster.kind != "local" else None
    if nodes is not None:
        fixes.append(f"trainer.num_nodes={nodes} (the fewest nodes that fit, keeping tp={job.parallelism.tp} "
                     f"pp={job.parallelism.pp}; parallelism.dp=null)")
    fixes.append("more model sharding (parallelism.tp, parallelism.pp)")
    out.error("memory", f"estimated {mem.total / GIB:.1f} GiB per device ({parts} GiB) exceeds 90% of the "
              f"{mem.capacity / GIB:.1f} GiB a rank has on {job.instance.name}; try {' or '.join(fixes)}")


def _check_traced_memory(job: JobConfig, out: Findings) -> None:
    """What plan.memory=traced cannot trace."""
    if job.plan.memory != "traced":
        return
    if uses_nxd(job):
        out.error("plan.memory", "traced follows the torch engine's FSDP2/TP code, not NxD's; on NxD (trn1) use "
                  "plan.memory=estimate")
    elif job.task == "dpo":
        out.error("plan.memory", "traced runs a cpt/sft step; a dpo step (reference forward, paired sequences) is "
                  "not traced yet; use plan.memory=estimate")


def _check_starting_weights(job: JobConfig, runs_here: bool, out: Findings) -> None:
    """Fine-tuning random weights learns nothing useful; continual pre-training them is pre-training from scratch."""
    if job.model.pretrained_path:
        return
    hint = ("set model.pretrained_path=<Hugging Face model folder> (SageMaker: /opt/ml/input/data/model with "
            "cluster.sagemaker.channels.model=s3://<bucket>/<model prefix>)")
    if job.training.lora.enabled:
        return  # _check_backend: an error for paid clusters, a warning here
    if job.task == "sft":
        out.warn("model.pretrained_path", f"not set: this fine-tunes randomly initialised weights; {hint}")
    elif job.task == "cpt" and not runs_here:
        out.warn("model.pretrained_path", f"not set: this pre-trains {job.model.name} from random weights, not "
                 f"continues a trained model; {hint}, unless training from scratch is the intent")


def section_problems(job: JobConfig) -> list[Problem]:
    """Each section's own range checks, for the root and the sections the job's task reads."""
    checks = Checks("")
    job.own_problems(checks)
    found = checks.found
    for name in (*SHARED_SECTIONS, *TASKS[job.task].sections):
        found += getattr(job, name).problems(name)
    return found


def _check_task_backend(job: JobConfig, out: Findings) -> None:
    """The task table says which training engines run a task (launcher/tasks.py)."""
    engine = engine_of(job)
    runs_on = TASKS[job.task].backends
    if engine not in runs_on:
        out.error("task", f"{job.task} runs on the {' and '.join(runs_on)} engine only, not on {engine} "
                  f"({job.instance.name}); use a GPU or trn2/trn3 instance (docs/{job.task}.md says why)")


def validate(job: JobConfig, memory: MemoryEstimate | None = None) -> tuple[Findings, Plan | DataPrepPlan | None]:
    """Check the job and, once its sections' own values are sound, plan it; None if they are not.

    memory replaces the plan's analytical estimate (plan.memory=traced passes the traced one).

    Checks that do not compute with the numbers (cluster settings, paths) run either way, so that every
    problem is reported at once; the layout, batch and memory checks wait for sound numbers.
    """
    out = Findings(problems=section_problems(job))
    sound = not out.problems
    trains_model = TASKS[job.task].trains_model
    cluster = cluster_of(job)
    cluster.check(job, out)
    if trains_model:
        _check_seq_len(job, out)
        _check_task_data(job, out)
    if trains_model and cluster.runs_here:
        _check_local_paths(job, out)
        _check_tracking(job, out)
    if trains_model and job.task != "eval":
        check_data_inputs(job, out, runs_here=cluster.runs_here)
    if trains_model and not cluster.runs_here:
        _check_pretrained_channel(job, out)
    if trains_model:
        _check_starting_weights(job, cluster.runs_here, out)
    if job.task == "prepare":
        _check_data_prep(job, out)
    _check_stack(job, out)
    _check_task_backend(job, out)
    if job.task == "dpo":
        check_preference_job(job, out)
    if not sound:
        return out, None
    if job.task == "prepare":
        prep = make_data_prep_plan(job)
        out.warnings.extend(w for w in prep.warnings if w not in out.warnings)  # what the weights leave out
        return out, prep
    plan = make_plan(job, memory=memory)
    if trains_model:
        _check_heads_and_layers(job, out)
    _check_backend(job, out)
    _check_traced_memory(job, out)
    if trains_model and not any(p.field == "trainer.nproc_per_node" for p in out.problems):
        _check_layout(job, plan, out)  # skipped after a rejected nproc_per_node: it would use that value
        _check_memory(plan, job, out)
        check_async_checkpoints(job, plan.checkpoint_staging_per_node, plan.ranks_per_node, plan.memory, out)
        check_elastic(job, out)
    return out, plan
