"""The data-preparation settings a prepare job runs with: data_prep with its defaults filled in.

data_prep.seq_len, tokenizer_path and seed default to the training section's values, so a prepare
job and the training job that reads its output agree on them; output.dir defaults to
<output_dir>/data. Used by launcher.validate (to check what will run) and train.prepare (to run it).
"""

from __future__ import annotations

import copy
from pathlib import Path

from launcher.config.schema import DataPrepConfig, JobConfig

DEFAULT_OUTPUT_SUBDIR = "data"


def resolve_data_prep(job: JobConfig) -> DataPrepConfig:
    """A copy of job.data_prep with seq_len, tokenizer_path, seed and output.dir set."""
    cfg = copy.deepcopy(job.data_prep)
    cfg.seq_len = cfg.seq_len if cfg.seq_len is not None else job.training.seq_len
    cfg.tokenizer_path = cfg.tokenizer_path or job.training.data.tokenizer_path
    cfg.seed = cfg.seed if cfg.seed is not None else job.training.seed
    cfg.output.dir = cfg.output.dir or str(Path(job.output_dir) / DEFAULT_OUTPUT_SUBDIR)
    return cfg
