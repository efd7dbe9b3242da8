"""Checks a whole job before anything runs or costs money; every problem is collected.

Each check adds a Problem naming the field at fault and what would fix it. Checks that
need sound numbers (positive degrees and batch sizes) run only once those are sound, so
one bad value does not cascade into a page of follow-on errors.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from launcher.clusters import CLUSTERS, cluster_of
from launcher.config import schema
from launcher.config.schema import JobConfig
from launcher.local_files import pretrained_problems, tokenizer_problems
from launcher.memory import GIB
from launcher.plan import Plan, make_plan
from launcher.preference_checks import check_preference
from launcher.problems import Findings
from launcher.tasks import TASKS
from launcher.topology import catalog_ranks_per_node


def _divisors(n: int, limit: int | None = None) -> str:
    values = [d for d in range(1, n + 1) if n % d == 0 and (limit is None or d <= limit)]
    return ", ".join(str(v) for v in values)


def _check_choices(job: JobConfig, out: Findings) -> None:
    choices = [
        ("action", job.action, schema.ACTIONS),
        ("model.family", job.model.family, schema.MODEL_FAMILIES),
        ("instance.accelerator", job.instance.accelerator, schema.ACCELERATOR_KINDS),
        ("cluster.kind", job.cluster.kind, tuple(CLUSTERS)),
        ("parallelism.data_parallel", job.parallelism.data_parallel, schema.DATA_PARALLEL_MODES),
        ("parallelism.pp_schedule", job.parallelism.pp_schedule, schema.PIPELINE_SCHEDULES),
        ("parallelism.activation_checkpointing", job.parallelism.activation_checkpointing,
         schema.ACTIVATION_CHECKPOINTING),
        ("training.task", job.training.task, tuple(TASKS)),
        ("training.precision", job.training.precision, schema.PRECISIONS),
        ("training.optimizer.name", job.training.optimizer.name, schema.OPTIMIZERS),
        ("training.schedule.name", job.training.schedule.name, schema.LR_SCHEDULES),
        ("cluster.sagemaker.input_mode", job.cluster.sagemaker.input_mode, schema.SAGEMAKER_INPUT_MODES),
        ("cluster.eks.rdzv_backend", job.cluster.eks.rdzv_backend, ("c10d", "etcd")),
    ]
    for key, value, allowed in choices:
        if value not in allowed:
            out.error(key, f"'{value}' is not one of {', '.join(allowed)}; set {key}=<one of those>")


def _check_ranges(job: JobConfig, out: Findings) -> None:
    at_least_one = [
        ("parallelism.tp", job.parallelism.tp),
        ("parallelism.pp", job.parallelism.pp),
        ("parallelism.virtual_pp", job.parallelism.virtual_pp),
        ("trainer.num_nodes", job.trainer.num_nodes),
        ("training.max_steps", job.training.max_steps),
        ("training.seq_len", job.training.seq_len),
        ("training.global_batch_size", job.training.global_batch_size),
        ("training.micro_batch_size", job.training.micro_batch_size),
        ("training.log_every_n_steps", job.training.log_every_n_steps),
        ("training.checkpoint.keep_last", job.training.checkpoint.keep_last),
        ("instance.accelerators_per_node", job.instance.accelerators_per_node),
        ("instance.cores_per_accelerator", job.instance.cores_per_accelerator),
        ("model.vocab_size", job.model.vocab_size),
        ("model.hidden_size", job.model.hidden_size),
        ("model.intermediate_size", job.model.intermediate_size),
        ("model.num_layers", job.model.num_layers),
        ("model.num_attention_heads", job.model.num_attention_heads),
        ("model.num_key_value_heads", job.model.num_key_value_heads),
    ]
    optional = [
        ("trainer.nproc_per_node", job.trainer.nproc_per_node),
        ("parallelism.dp", job.parallelism.dp),
        ("parallelism.pp_microbatches", job.parallelism.pp_microbatches),
        ("parallelism.kv_replicator", job.parallelism.kv_replicator),
    ]
    for key, value in at_least_one + [(k, v) for k, v in optional if v is not None]:
        if value < 1:
            out.error(key, f"must be at least 1, got {value}")
    non_negative = [
        ("training.checkpoint.every_n_steps", job.training.checkpoint.every_n_steps),
        ("training.eval_every_n_steps", job.training.eval_every_n_steps),
        ("training.schedule.warmup_steps", job.training.schedule.warmup_steps),
        ("training.optimizer.grad_clip", job.training.optimizer.grad_clip),
    ]
    for key, value in non_negative:
        if value < 0:
            out.error(key, f"must be 0 or more, got {value}")
    if not 0 < job.trainer.assumed_mfu <= 1:
        out.error("trainer.assumed_mfu", f"must be in (0, 1], got {job.trainer.assumed_mfu}; e.g. 0.4")
    if job.training.optimizer.lr <= 0:
        out.error("training.optimizer.lr", f"must be positive, got {job.training.optimizer.lr}")
    if not 0 <= job.training.schedule.min_lr_ratio <= 1:
        out.error("training.schedule.min_lr_ratio", f"must be in [0, 1], got {job.training.schedule.min_lr_ratio}")
    if job.instance.device_memory_gib <= 0:
        out.error("instance.device_memory_gib", f"must be positive, got {job.instance.device_memory_gib}")
    if not job.job_name or not all(c.isalnum() or c in "-_." for c in job.job_name):
        out.error("job_name", f"'{job.job_name}' must be non-empty letters, digits, '-', '_' or '.'")


def _check_heads_and_layers(job: JobConfig, out: Findings) -> None:
    model, par, acc = job.model, job.parallelism, job.instance.accelerator
    tp, heads, kv = par.tp, model.num_attention_heads, model.num_key_value_heads
    if heads % tp:
        out.error("parallelism.tp", f"tp={tp} does not divide the {heads} attention heads of {model.name}; "
                  f"use one of {_divisors(heads)}")
    if heads % kv:
        out.error("model.num_key_value_heads", f"{kv} KV heads do not divide {heads} query heads")
    if acc.startswith("trainium"):
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
                      f"replication exists only on Trainium; use tp in {_divisors(kv)}")
        if par.kv_replicator not in (None, 1):
            out.error("parallelism.kv_replicator", "is a Trainium setting; leave it null on this instance")
    chunks = par.pp * par.virtual_pp
    if model.num_layers % chunks:
        what = f"pp={par.pp}" if par.virtual_pp == 1 else f"pp x virtual_pp = {chunks}"
        out.error("parallelism.pp", f"{what} does not divide the {model.num_layers} layers of {model.name}; "
                  f"use one of {_divisors(model.num_layers, 64)}")
    if par.pp_schedule == "interleaved_1f1b" and par.virtual_pp < 2:
        out.error("parallelism.virtual_pp", "interleaved_1f1b needs virtual_pp of 2 or more")
    if par.virtual_pp > 1 and par.pp_schedule != "interleaved_1f1b":
        out.error("parallelism.pp_schedule", f"virtual_pp={par.virtual_pp} needs pp_schedule=interleaved_1f1b")
    if par.sequence_parallel and tp == 1:
        out.error("parallelism.sequence_parallel", "needs tp > 1; set parallelism.tp or sequence_parallel=false")
    window = model.sliding_window
    if window is not None and job.training.seq_len > window and not acc.startswith("trainium"):
        out.error("training.seq_len", f"{job.training.seq_len} exceeds {model.name}'s sliding_window {window}; the "
                  "engine attends causally over the whole row, so keep training.seq_len <= sliding_window")
    if job.training.seq_len > model.max_position_embeddings:
        out.error("training.seq_len", f"{job.training.seq_len} exceeds {model.name}'s "
                  f"max_position_embeddings {model.max_position_embeddings}; lower training.seq_len")


def _check_backend(job: JobConfig, out: Findings) -> None:
    inst, par, acc = job.instance, job.parallelism, job.instance.accelerator
    trainium = acc.startswith("trainium")
    if trainium and par.data_parallel in ("fsdp", "hsdp"):
        out.error("parallelism.data_parallel", f"{par.data_parallel} is a GPU strategy; on Trainium use zero1 "
                  "(or ddp)")
    if not trainium and par.data_parallel == "zero1":
        out.error("parallelism.data_parallel", "zero1 is Trainium's optimizer sharding; on this instance use fsdp, "
                  "hsdp or ddp")
    if trainium and par.pp > 1 and par.pp_schedule == "gpipe":
        out.error("parallelism.pp_schedule", "NxD pipelines run 1F1B; use 1f1b or interleaved_1f1b")
    if trainium and job.training.compile:
        out.error("training.compile", "torch.compile is for GPUs; Neuron compiles its graphs itself; set false")
    if acc == "trainium2":
        if inst.logical_core_config not in (None, 1, 2):
            out.error("instance.logical_core_config", f"LNC must be 1 or 2 on trn2, got {inst.logical_core_config}")
    elif inst.logical_core_config not in (None, 1):
        out.error("instance.logical_core_config", "only trn2 has a logical core setting; leave it null")
    nproc = job.trainer.nproc_per_node
    if trainium and nproc is not None and nproc != catalog_ranks_per_node(inst):
        out.error("trainer.nproc_per_node", f"Trainium runs one rank per NeuronCore: {inst.name} has "
                  f"{catalog_ranks_per_node(inst)}; leave it null (on trn2 set instance.logical_core_config)")
    lora = job.training.lora
    if lora.enabled and par.tp > 1:
        out.error("training.lora.enabled", "LoRA adapters are not tensor-parallel in this engine; use "
                  "parallelism.tp=1 (FSDP shards the frozen base) or train every weight")
    if lora.enabled and trainium:
        out.error("training.lora.enabled", "LoRA is not available on the Neuron backend yet; use a GPU instance")
    if lora.enabled and lora.rank < 1:
        out.error("training.lora.rank", f"must be at least 1, got {lora.rank}")
    if job.training.data.document_masking and (par.pp > 1 or trainium):
        out.error("training.data.document_masking", "works without pipeline parallelism on GPU and CPU only; set "
                  "parallelism.pp=1 or document_masking=false")
    if not trainium and par.pp > 1 and job.model.tie_word_embeddings:
        out.error("parallelism.pp", "tied input and output embeddings live on the first and last stage; "
                  "use pp=1 for this model")
    if acc == "cpu" and job.training.precision == "bf16":
        out.warn("training.precision", "bf16 on CPU is about 12x slower than fp32 on these machines")
    if par.data_parallel == "hsdp" and job.trainer.num_nodes == 1:
        out.warn("parallelism.data_parallel", "hsdp on one node shards like fsdp")


def _tokenizer_size(tokenizer_dir: Path) -> int | None:
    path = tokenizer_dir / "tokenizer.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ids = list(data.get("model", {}).get("vocab", {}).values()) + [t["id"] for t in data.get("added_tokens", [])]
    return max(ids) + 1 if ids else None


def _first_jsonl_record(path: Path) -> dict | None:
    """The first record of a JSONL file, or None when it has none that parses as an object."""
    try:
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                if line.strip():
                    record = json.loads(line)
                    return record if isinstance(record, dict) else None
    except (OSError, ValueError):
        return None
    return None


def _check_text_field(job: JobConfig, out: Findings) -> None:
    """A pre-training JSONL corpus must carry the text field the job reads."""
    data = job.training.data
    for key, value in (("training.data.train_path", data.train_path), ("training.data.valid_path", data.valid_path)):
        if value is None or not value.endswith(".jsonl") or not Path(value).is_file():
            continue
        record = _first_jsonl_record(Path(value))
        if record is not None and data.text_field not in record:
            fields = ", ".join(sorted(record)) or "none"
            out.error("training.data.text_field", f"'{data.text_field}' is not a field of {key}'s records (they have "
                      f"{fields}); set training.data.text_field=<one of those>")
            return


def _check_local_paths(job: JobConfig, out: Findings) -> None:
    """Data and tokenizer must exist where the job runs here (remote paths are checked by the job)."""
    data = job.training.data
    for key, value in (("training.data.train_path", data.train_path), ("training.data.valid_path", data.valid_path)):
        if value is not None and not Path(value).exists():
            out.error(key, f"{value} does not exist; point it at packed shards or a .jsonl/.txt corpus")
    if job.training.task == "cpt":
        _check_text_field(job, out)
    tokenizer = Path(data.tokenizer_path)
    if not (tokenizer / "tokenizer.json").is_file():
        out.error("training.data.tokenizer_path", f"{tokenizer} has no tokenizer.json; point it at a Hugging Face "
                  "tokenizer folder")
    elif problems := tokenizer_problems(tokenizer):
        for message in problems:
            out.error("training.data.tokenizer_path", message)
    else:
        size = _tokenizer_size(tokenizer)
        if size is not None and size > job.model.vocab_size:
            out.error("model.vocab_size", f"{job.model.vocab_size} is smaller than the tokenizer's {size} tokens; "
                      "use a model whose vocab covers the tokenizer")
    pretrained = job.model.pretrained_path
    if pretrained is not None and not (Path(pretrained) / "config.json").is_file():
        out.error("model.pretrained_path", f"{pretrained} has no config.json; point it at a Hugging Face "
                  "checkpoint folder or set it to null")
    elif pretrained is not None:
        for message in pretrained_problems(Path(pretrained)):
            out.error("model.pretrained_path", message)


def _check_data_prep(job: JobConfig, out: Findings) -> None:
    """Sources, thresholds and the tokenizer of a prepare job (paths only for local runs)."""
    from launcher.data_prep import resolve_data_prep
    from train.data.pipeline.packages import missing_packages

    prep = resolve_data_prep(job)
    runs_here = cluster_of(job).runs_here
    if not prep.sources:
        out.error("data_prep.sources", "no sources; add at least one, e.g. "
                  "data_prep.sources='[{name: web, path: /data/web.jsonl}]' (see recipes/prepare_sample.yaml)")
    names = [s.name for s in prep.sources]
    for i, source in enumerate(prep.sources):
        key = f"data_prep.sources[{i}]"
        if not source.name or names.count(source.name) > 1:
            out.error(f"{key}.name", f"'{source.name}' must be a non-empty name used by one source only")
        if source.format not in schema.DATA_SOURCE_FORMATS:
            out.error(f"{key}.format", f"'{source.format}' is not one of {', '.join(schema.DATA_SOURCE_FORMATS)}")
        if not source.weight > 0:
            out.error(f"{key}.weight", f"must be positive (a share of the mix), got {source.weight}")
        if source.format in ("jsonl", "parquet") and not source.text_field:
            out.error(f"{key}.text_field", "must name the field holding the text, e.g. text")
        if runs_here and not Path(source.path).exists():
            out.error(f"{key}.path", f"{source.path} does not exist; point it at a file or a folder of "
                      f"{source.format} files")
    filters, dedup = prep.filters, prep.dedup
    fractions = [("filters.min_alpha_word_fraction", filters.min_alpha_word_fraction),
                 ("filters.max_duplicate_line_fraction", filters.max_duplicate_line_fraction),
                 ("filters.max_duplicate_ngram_fraction", filters.max_duplicate_ngram_fraction),
                 ("filters.min_language_score", filters.min_language_score)]
    for name, value in fractions:
        if not 0 <= value <= 1:
            out.error(f"data_prep.{name}", f"must be in [0, 1], got {value}")
    if filters.min_words < 0:
        out.error("data_prep.filters.min_words", f"must be 0 or more, got {filters.min_words}")
    if filters.max_words is not None and filters.max_words < filters.min_words:
        out.error("data_prep.filters.max_words", f"{filters.max_words} is below min_words {filters.min_words}; "
                  "raise it or set it to null")
    if not 0 <= filters.min_mean_word_length <= filters.max_mean_word_length:
        out.error("data_prep.filters.min_mean_word_length", f"need 0 <= min ({filters.min_mean_word_length}) <= "
                  f"max_mean_word_length ({filters.max_mean_word_length})")
    if filters.ngram_size < 1:
        out.error("data_prep.filters.ngram_size", f"must be at least 1, got {filters.ngram_size}")
    if filters.blocked_domains and not filters.url_field:
        out.error("data_prep.filters.url_field", "blocked_domains needs the record field holding the URL; set "
                  "data_prep.filters.url_field=url")
    if dedup.granularity not in schema.DEDUP_GRANULARITIES:
        out.error("data_prep.dedup.granularity", f"'{dedup.granularity}' is not one of "
                  f"{', '.join(schema.DEDUP_GRANULARITIES)}")
    if not 0 < dedup.threshold <= 1:
        out.error("data_prep.dedup.threshold", f"must be in (0, 1], got {dedup.threshold}; e.g. 0.8")
    if dedup.num_perm < 16:
        out.error("data_prep.dedup.num_perm", f"must be at least 16 for a usable estimate, got {dedup.num_perm}")
    if dedup.shingle_size < 1:
        out.error("data_prep.dedup.shingle_size", f"must be at least 1, got {dedup.shingle_size}")
    if not 0 <= prep.split.valid_fraction < 1:
        out.error("data_prep.split.valid_fraction", f"must be in [0, 1), got {prep.split.valid_fraction}")
    if prep.output.shard_chars < 1:
        out.error("data_prep.output.shard_chars", f"must be at least 1, got {prep.output.shard_chars}")
    if prep.workers < 0:
        out.error("data_prep.workers", f"must be 0 (every core) or more, got {prep.workers}")
    if prep.seq_len < 2:
        out.error("data_prep.seq_len", f"must be at least 2, got {prep.seq_len}")
    if runs_here:  # a remote job checks its packages when it starts (train.prepare)
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
    fixes.append("more sharding (parallelism.tp, parallelism.pp, or fsdp/zero1 over more nodes)")
    out.error("memory", f"estimated {mem.total / GIB:.1f} GiB per device ({parts} GiB) exceeds 90% of the "
              f"{mem.capacity / GIB:.1f} GiB a rank has on {job.instance.name}; try {' or '.join(fixes)}")


def validate(job: JobConfig) -> tuple[Findings, Plan | None]:
    """Check the job and, once its basic numbers are sound, plan it; None if they are not."""
    out = Findings()
    _check_choices(job, out)
    _check_ranges(job, out)
    if out.problems:
        return out, None
    plan = make_plan(job)
    trains_model = TASKS[job.training.task].trains_model
    if trains_model:
        _check_heads_and_layers(job, out)
    _check_backend(job, out)
    cluster = cluster_of(job)
    cluster.check(job, out)
    if trains_model and cluster.runs_here:
        _check_local_paths(job, out)
    check_preference(job, out, local_paths=cluster.runs_here)
    if job.training.task == "prepare":
        _check_data_prep(job, out)
    if trains_model and not any(p.field == "trainer.nproc_per_node" for p in out.problems):
        _check_layout(job, plan, out)  # skipped after a rejected nproc_per_node: it would use that value
        _check_memory(plan, job, out)
    return out, plan
