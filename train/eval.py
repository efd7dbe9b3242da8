"""Held-out loss and perplexity of a trained model: python -m train.eval --job job.yaml.

The model is model.pretrained_path (a Hugging Face folder) when set, else the latest
checkpoint in training.checkpoint.dir. It runs in the job's layout (TP, PP, FSDP), over the
validation set a training run of the same job would use, and writes eval.json.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from launcher.config.schema import JobConfig
from launcher.jobfile import COMPLETE_MARKER, write_text_atomic
from launcher.plan import make_plan
from train.data.loader import eval_batches
from train.data.open import open_dataset
from train.distributed import shutdown
from train.entry import run_entrypoint
from train.errors import JobError
from train.gpu.checkpoint import find_latest, load_model_weights
from train.gpu.engine import Engine
from train.trainer import evaluate, init_job_distributed, regroup_for_pipeline, to_batches

EVAL_FILE = "eval.json"


def evaluate_job(job: JobConfig) -> dict:
    """Evaluate the job's model on its validation data and return (and write) the result."""
    cfg = job.training
    if cfg.data.valid_path is None:
        raise JobError("training.data.valid_path is not set; point it at held-out data to evaluate on")
    source = job.model.pretrained_path
    checkpoint = None
    if source is None:
        checkpoint = find_latest(Path(cfg.checkpoint.dir))
        if checkpoint is None:
            raise JobError(f"no model to evaluate: {cfg.checkpoint.dir} holds no complete checkpoint and "
                           "model.pretrained_path is not set")
    plan = make_plan(job)
    ctx = init_job_distributed(job, plan)
    engine = Engine(job, ctx, pipeline_microbatches=plan.pipeline_microbatches)
    step = None
    if checkpoint is not None:
        step = load_model_weights(checkpoint, engine.checkpoint_module())["step"]
    valid = open_dataset(cfg.data.valid_path, job, ctx.is_main)
    if cfg.data.document_masking:
        engine.mask_documents(valid.index["eos_id"])
    batches = to_batches(eval_batches(valid, global_batch=cfg.global_batch_size, micro_batch=cfg.micro_batch_size,
                                      batches=cfg.eval_batches, dp_rank=ctx.dp_rank, dp_size=ctx.dp_size))
    if engine.pipelined:
        batches = regroup_for_pipeline(batches, cfg.global_batch_size // ctx.dp_size)
    loss = evaluate(engine, batches, ctx)
    result = {"model": str(source or checkpoint), "checkpoint_step": step, "val_loss": loss,
              "val_ppl": math.exp(min(loss, 50)), "rows": min(len(valid), cfg.global_batch_size * cfg.eval_batches)}
    if ctx.is_main:
        out_dir = Path(job.output_dir)
        write_text_atomic(out_dir / EVAL_FILE, json.dumps(result, indent=2) + "\n")
        print(f"val_loss={loss:.4f} val_ppl={result['val_ppl']:.2f} ({result['model']})", flush=True)
        write_text_atomic(out_dir / COMPLETE_MARKER, json.dumps(result) + "\n")
    shutdown()
    return result


if __name__ == "__main__":
    run_entrypoint("eval", job_runner=evaluate_job)
