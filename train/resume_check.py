"""A resume goes only into the same job (launcher/job_record.py): checked against the checkpoint's record before
any tensor is loaded (DCP would load only the keys the new model asks for, and nothing compares shapes)."""

from __future__ import annotations

from llm_launch.launcher.job_record import RECORD_KEY, compare, job_record
from llm_launch.train.errors import JobError


def layout_of(plan) -> dict:
    """The layout a record names: world size and the parallel degrees."""
    return {"world_size": plan.world_size, "tp": plan.tp, "pp": plan.pp, "dp": plan.dp}


def record_of(job, plan) -> dict:
    """This job's record, for trainer_state.json."""
    return job_record(job, layout_of(plan))


def check_resume(job, current: dict, trainer_state: dict, checkpoint: str, *, is_main: bool) -> None:
    """JobError (one line) when resuming checkpoint would change the model, or the tokenizer, data, seq_len or
    global batch that training.checkpoint.allow_changes does not name; rank 0 prints one line per allowed change and
    for a changed layout."""
    saved = trainer_state.get(RECORD_KEY)
    if not saved:
        if is_main:
            print(f"{checkpoint} records no job definition (written by an earlier version): resuming without comparing "
                  "model, data, seq_len and batch", flush=True)
        return
    refusals, notes = compare(saved, current, list(job.training.checkpoint.allow_changes), checkpoint)
    if refusals:
        others = [key for key, _ in refusals[1:]]
        raise JobError(refusals[0][1] + (f" (also changed: {', '.join(others)})" if others else ""))
    if is_main:
        for note in notes:
            print(note, flush=True)
