"""llm-launch-convert: move model weights between Hugging Face, NxD sharded and DCP checkpoints.

Every check (inputs, model config, layout, shapes, output folder) runs before anything is
written; problems are printed one per line and the exit code is 2. The output appears
atomically (written to a temporary sibling, then renamed) and an existing one is replaced only
with --force. Nothing is ever asked interactively.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import torch
from llm_launch.launcher.config.schema import ModelConfig
from llm_launch.launcher.problems import USAGE_EXIT_CODE, Problem
from llm_launch.train.convert.checks import hf_state_problems
from llm_launch.train.convert.hf_io import CheckpointError, SafetensorsReader
from llm_launch.train.convert.layout import HW_BACKENDS, ModelShape, ShardLayout, default_kv_replicator, layout_problems
from llm_launch.train.convert.nxd import ConversionStats, default_threads
from llm_launch.train.convert.output import output_problem, staged_output
from llm_launch.train.convert.spec import (
    CONFIG_JSON,
    SpecError,
    hf_config_dict,
    job_model_and_layout,
    model_group,
    read_hf_config,
    shape_of_hf_config,
    shape_of_model,
)
from llm_launch.train.convert.tokenizer_files import copy_tokenizer_files

PROG = "llm-launch-convert"
LAYOUT_FILE = "nxd_layout.json"
DTYPES = {"keep": None, "bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}
DEFAULT_MAX_SHARD = "5GB"

EPILOG = """\
model config (dimensions every tensor is checked against), first that applies:
  --job job.yaml        the job's model group; for NxD also its layout (tp, pp, virtual_pp,
                        kv_replicator, trn1/trn2 from the instance, neuron.fused_qkv)
  --model NAME          conf/model/NAME.yaml, e.g. llama3_8b, llama2_70b, mistral_7b
  --config FILE         a Hugging Face config.json
  (default)             config.json of the input folder (hf-to-*; and nxd-to-hf on a folder
                        written by hf-to-nxd, which also records its layout in nxd_layout.json)

examples:
  llm-launch-convert hf-to-nxd -i Meta-Llama-3-8B -o ckpt/llama3-8b-tp32 --tp 32 --kv-replicator 4 --hw trn1
  llm-launch-convert hf-to-nxd -i Meta-Llama-3-8B -o ckpt/tp32 --job outputs/llama3-8b-cpt-trn1/job.yaml
  llm-launch-convert nxd-to-hf -i ckpt/step_2000 -o hf/llama3-8b-cpt --model llama3_8b --tp 32 --kv-replicator 4
  llm-launch-convert dcp-to-hf -i outputs/run/checkpoints -o hf/run --model tiny_llama
  llm-launch-convert hf-to-dcp -i Meta-Llama-3-8B -o dcp/llama3-8b
exit codes: 0 done, 2 a problem found before anything was written, 1 failure while converting."""


def _size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)B?\s*", text.upper())
    if not match:
        raise argparse.ArgumentTypeError(f"'{text}' is not a size like 5GB or 500MB")
    return int(float(match.group(1)) * 1024 ** " KMGT".index(match.group(2) or " "))


def threaded_shard_bytes(total: int, threads: int) -> int:
    """nxd-to-hf's default largest file: DEFAULT_MAX_SHARD, or less so that each writer thread fills its own file
    (two threads writing into one file wait on each other in the kernel). Models under 1 GiB stay one file."""
    return min(_size(DEFAULT_MAX_SHARD), max(-(-total // threads), 1024 ** 3))


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number of at least 1")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    helps = {
        "hf-to-nxd": "Hugging Face safetensors (one file or a sharded index) -> NxD model/ shards",
        "nxd-to-hf": "NxD model/ shards -> Hugging Face folder (safetensors + config.json)",
        "dcp-to-hf": "GPU engine DCP checkpoint (step folder or checkpoints folder) -> Hugging Face folder",
        "hf-to-dcp": "Hugging Face folder -> model-only DCP checkpoint ({'model': HF state dict})",
    }
    for name, text in helps.items():
        sub = commands.add_parser(name, help=text, description=text, epilog=EPILOG,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.add_argument("-i", "--input", type=Path, required=True, help="checkpoint to read")
        sub.add_argument("-o", "--output", type=Path, required=True, help="folder to create")
        sub.add_argument("--force", action="store_true", help="replace --output if it exists")
        source = sub.add_mutually_exclusive_group()
        source.add_argument("--config", type=Path, help="Hugging Face config.json of the model")
        source.add_argument("--model", help="model group name under conf/model/ (e.g. llama3_8b)")
        source.add_argument("--job", type=Path, help="a job.yaml written by llm-launch")
        sub.add_argument("--no-progress", action="store_true", help="no progress bar")
        if name != "hf-to-dcp":
            sub.add_argument("--dtype", choices=list(DTYPES), default="keep", help="cast the weights (default keep)")
        if name in ("hf-to-nxd", "nxd-to-hf"):
            sub.add_argument("--tp", type=int, help="tensor-parallel degree (default 1, or the job's)")
            sub.add_argument("--pp", type=int, help="pipeline-parallel degree (default 1)")
            sub.add_argument("--virtual-pp", type=int, help="model chunks per pipeline rank (default 1)")
            sub.add_argument("--kv-replicator", type=int,
                             help="KV-head replication, NxD kv_size_multiplier (default tp / kv_heads when tp "
                                  "exceeds the KV heads, else 1)")
            sub.add_argument("--hw", choices=HW_BACKENDS, help="replication order: trn1 interleaved, trn2 blocked "
                             "(default trn1)")
            sub.add_argument("--fused-qkv", action=argparse.BooleanOptionalAction, default=None,
                             help="qkv_proj.weight_qkv instead of weight_q/_k/_v (default off)")
            sub.add_argument("--threads", type=_positive, default=default_threads(),
                             help="threads moving tensors into the output files (default: the CPUs, at most 8)")
        if name.endswith("-to-hf"):
            sub.add_argument("--max-shard-size", type=_size, default=None,
                             help=f"largest safetensors file written (default {DEFAULT_MAX_SHARD}; nxd-to-hf splits "
                             "a model over 1 GiB into about one file per --threads below that)")
    return parser


class Plan:
    """What a command will do, resolved from its flags, with every problem found on the way."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.shape: ModelShape | None = None
        self.config_json: dict[str, Any] | None = None
        self.layout: ShardLayout | None = None

    def error(self, where: str, message: str) -> None:
        self.problems.append(Problem(where, message))


def _model_source(args: argparse.Namespace, plan: Plan, default_config: Path | None):
    """Set plan.shape and plan.config_json from --job, --model, --config or the default config.json."""
    try:
        job_layout = None
        if args.job:
            model, job_layout = job_model_and_layout(args.job)
            _set_model(plan, model)
        elif args.model:
            _set_model(plan, model_group(args.model))
        else:
            path = args.config or default_config
            if path is None:
                plan.error("--config", "the model config is needed: pass --config <config.json>, --model <name> "
                           "or --job <job.yaml>")
                return None
            plan.config_json = read_hf_config(path)
            plan.shape = shape_of_hf_config(plan.config_json)
        return job_layout
    except SpecError as exc:
        plan.error("--job" if args.job else "--model" if args.model else "--config", str(exc))
        return None


def _set_model(plan: Plan, model: ModelConfig) -> None:
    plan.shape = shape_of_model(model)
    plan.config_json = hf_config_dict(model)


def _resolve_layout(args: argparse.Namespace, plan: Plan, job_layout: ShardLayout | None,
                    recorded: dict[str, Any]) -> None:
    base = job_layout or ShardLayout(**{k: v for k, v in recorded.items() if k in ShardLayout.__dataclass_fields__})
    tp = args.tp if args.tp is not None else base.tp
    kv = args.kv_replicator
    if kv is None:
        kv = base.kv_replicator if (args.tp is None and (job_layout or "kv_replicator" in recorded)) \
            else default_kv_replicator(plan.shape.num_kv_heads, tp)
    plan.layout = ShardLayout(
        tp=tp, pp=args.pp if args.pp is not None else base.pp,
        virtual_pp=args.virtual_pp if args.virtual_pp is not None else base.virtual_pp,
        kv_replicator=kv, hw=args.hw or base.hw,
        fused_qkv=args.fused_qkv if args.fused_qkv is not None else base.fused_qkv)
    for where, message in layout_problems(plan.shape, plan.layout):
        plan.error(where, message)


def _report(plan: Plan) -> None:
    noun = "problem" if len(plan.problems) == 1 else "problems"
    print(f"{PROG}: {len(plan.problems)} {noun} found before anything was written:", file=sys.stderr)
    for problem in plan.problems:
        print(f"  error: {problem}", file=sys.stderr)
    sys.exit(USAGE_EXIT_CODE)


def _progress_bar(total: int, args: argparse.Namespace):
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=args.command,
                disable=args.no_progress, file=sys.stderr, leave=False)


def _write_config(out_dir: Path, config: dict[str, Any] | None, dtype: torch.dtype | None) -> None:
    if config is None:
        return
    config = dict(config)
    if dtype is not None:
        config["torch_dtype"] = str(dtype).removeprefix("torch.")
    (out_dir / CONFIG_JSON).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def _total_bytes(shape: ModelShape, dtype: torch.dtype) -> int:
    from llm_launch.train.convert.mapping import hf_shapes

    size = torch.empty((), dtype=dtype).element_size()
    total = 0
    for dims in hf_shapes(shape).values():
        count = 1
        for d in dims:
            count *= d
        total += count * size
    return total


def run_hf_to_nxd(args: argparse.Namespace, plan: Plan) -> ConversionStats:
    from llm_launch.train.convert.nxd import hf_to_nxd

    job_layout = _model_source(args, plan, args.input / CONFIG_JSON if args.input.is_dir() else None)
    reader = _open_hf(args, plan)
    if plan.shape is not None:
        _resolve_layout(args, plan, job_layout, {})
        if reader is not None:
            for where, message in hf_state_problems(plan.shape, reader.keys(), reader.shape, str(args.input)):
                plan.error(where, message)
    _check_output(args, plan)
    if plan.problems:
        _report(plan)
    dtype = DTYPES[args.dtype]
    bar = _progress_bar(_total_bytes(plan.shape, dtype or reader.dtype(reader.keys()[0])), args)
    with staged_output(args.output) as tmp, bar:
        stats = hf_to_nxd(reader, tmp, plan.shape, plan.layout, dtype=dtype, progress=bar.update,
                          threads=args.threads)
        _write_config(tmp, plan.config_json, dtype)
        layout = {k: getattr(plan.layout, k) for k in ShardLayout.__dataclass_fields__}
        (tmp / LAYOUT_FILE).write_text(json.dumps(layout, indent=2) + "\n", encoding="utf-8")
        copy_tokenizer_files(args, tmp)  # carried, so that nxd-to-hf gives a folder that loads whole
    return stats


def run_nxd_to_hf(args: argparse.Namespace, plan: Plan) -> ConversionStats:
    from llm_launch.train.convert.nxd import nxd_to_hf, replica_problems, shard_problems
    from llm_launch.train.convert.nxd_archive import find_model_dir, open_shards

    recorded: dict[str, Any] = {}
    layout_file = args.input / LAYOUT_FILE
    if layout_file.is_file():
        recorded = json.loads(layout_file.read_text(encoding="utf-8"))
    own_config = args.input / CONFIG_JSON
    job_layout = _model_source(args, plan, own_config if own_config.is_file() else None)
    if not args.input.is_dir():
        plan.error("--input", f"{args.input} is not a folder; point it at an NxD checkpoint tag or its model/ folder")
    shards = None
    if plan.shape is not None:
        _resolve_layout(args, plan, job_layout, recorded)
        if args.input.is_dir() and not plan.problems:
            shards, missing = open_shards(find_model_dir(args.input), plan.layout)
            problems = missing + shard_problems(shards.states, plan.shape, plan.layout)
            for where, message in problems or replica_problems(shards.states, plan.shape, plan.layout):
                plan.error(where, message)
    _check_output(args, plan)
    if plan.problems:
        _report(plan)
    dtype = DTYPES[args.dtype] or next(iter(next(iter(shards.states.values())).values())).dtype
    total = _total_bytes(plan.shape, dtype)
    bar = _progress_bar(total, args)
    with staged_output(args.output) as tmp, bar:
        stats = nxd_to_hf(shards, tmp, plan.shape, plan.layout,
                          max_shard_bytes=args.max_shard_size or threaded_shard_bytes(total, args.threads),
                          dtype=dtype, progress=bar.update, threads=args.threads)
        _write_config(tmp, plan.config_json, dtype)
        copy_tokenizer_files(args, tmp)
    return stats


def run_dcp_to_hf(args: argparse.Namespace, plan: Plan) -> ConversionStats:
    from llm_launch.train.convert.dcp import dcp_model_entries, dcp_to_hf, resolve_dcp_dir

    _model_source(args, plan, None)
    source = resolve_dcp_dir(args.input)
    entries = {}
    try:
        entries = dcp_model_entries(source)
    except Exception as exc:  # DCP raises several types for a missing or foreign folder
        plan.error("--input", f"{source} is not a readable DCP checkpoint ({type(exc).__name__}: {exc})")
    if plan.shape is not None and entries:
        for where, message in hf_state_problems(plan.shape, list(entries), lambda k: tuple(entries[k].size),
                                                str(source)):
            plan.error(where, message)
    _check_output(args, plan)
    if plan.problems:
        _report(plan)
    dtype = DTYPES[args.dtype]
    first = next(iter(entries.values())).properties.dtype
    bar = _progress_bar(_total_bytes(plan.shape, dtype or first), args)
    with staged_output(args.output) as tmp, bar:
        stats = dcp_to_hf(source, tmp, plan.shape, max_shard_bytes=args.max_shard_size or _size(DEFAULT_MAX_SHARD),
                          dtype=dtype, progress=bar.update)
        _write_config(tmp, plan.config_json, dtype or first)
        copy_tokenizer_files(args, tmp)
    return stats


def run_hf_to_dcp(args: argparse.Namespace, plan: Plan) -> ConversionStats:
    from llm_launch.train.convert.dcp import hf_to_dcp

    _model_source(args, plan, args.input / CONFIG_JSON if args.input.is_dir() else None)
    reader = _open_hf(args, plan)
    if plan.shape is not None and reader is not None:
        for where, message in hf_state_problems(plan.shape, reader.keys(), reader.shape, str(args.input)):
            plan.error(where, message)
    _check_output(args, plan)
    if plan.problems:
        _report(plan)
    with staged_output(args.output) as tmp:
        return hf_to_dcp(args.input, tmp, plan.shape)


def _open_hf(args: argparse.Namespace, plan: Plan) -> SafetensorsReader | None:
    if not args.input.is_dir():
        plan.error("--input", f"{args.input} is not a folder; point it at a Hugging Face checkpoint folder")
        return None
    try:
        return SafetensorsReader(args.input)
    except CheckpointError as exc:
        plan.error("--input", str(exc))
        return None


def _check_output(args: argparse.Namespace, plan: Plan) -> None:
    problem = output_problem(args.output, args.force)
    if problem:
        plan.error("--output", problem)
    if args.output.resolve() == args.input.resolve():
        plan.error("--output", "must differ from --input")


COMMANDS = {"hf-to-nxd": run_hf_to_nxd, "nxd-to-hf": run_nxd_to_hf, "dcp-to-hf": run_dcp_to_hf,
            "hf-to-dcp": run_hf_to_dcp}


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    # Conversion is memory-bound copying: torch's intra-op threads only add spinning (several times
    # the CPU on a busy machine); the converters run their own threads, one tensor at a time each.
    intra_op_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    started = time.perf_counter()
    try:
        stats = COMMANDS[args.command](args, Plan())
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; nothing was written to {args.output}", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # one line, no traceback: the staged output has been removed
        print(f"{PROG}: error: {type(exc).__name__}: {exc} (nothing was written to {args.output})", file=sys.stderr)
        sys.exit(1)
    finally:
        torch.set_num_threads(intra_op_threads)
    elapsed = time.perf_counter() - started
    gigabytes = stats.bytes_written / 1e9
    print(f"{PROG}: wrote {stats.tensors} tensors ({gigabytes:.2f} GB) in {stats.files} files to {args.output} "
          f"in {elapsed:.2f} s ({gigabytes / max(elapsed, 1e-9):.2f} GB/s)")
