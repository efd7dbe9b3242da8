"""Where each cluster kind reads a recipe's data, tokenizer and model, as a user of that cluster would set them."""

from __future__ import annotations

SHARED_INPUTS = ("training.data.train_path=/fsx/data/train", "training.data.valid_path=/fsx/data/valid",
                 "training.data.tokenizer_path=/fsx/models/base", "model.pretrained_path=/fsx/models/base",
                 "data_prep.sources.0.path=/fsx/raw/train.jsonl", "data_prep.tokenizer_path=/fsx/models/base")
"""Paths on the cluster's shared file system (EKS: the PVC at cluster.eks.mount_path, Slurm: shared_dir)."""
CHANNEL = "/opt/ml/input/data"
CHANNEL_INPUTS = (f"training.data.train_path={CHANNEL}/train/train", f"training.data.valid_path={CHANNEL}/train/valid",
                  f"training.data.tokenizer_path={CHANNEL}/model", f"model.pretrained_path={CHANNEL}/model",
                  f"data_prep.sources.0.path={CHANNEL}/train/raw.jsonl", f"data_prep.tokenizer_path={CHANNEL}/model")
"""The same inputs as SageMaker input channels (conf/cluster/sagemaker.yaml defines train and model)."""


def cluster_inputs(cluster: str, task: str) -> tuple[str, ...]:
    """Overrides that put a recipe's inputs where `cluster` reads them (none for a local run)."""
    if cluster == "local":
        return ()
    inputs = CHANNEL_INPUTS if cluster == "sagemaker" else SHARED_INPUTS
    keep = [o for o in inputs if o.startswith("data_prep.") == (task == "prepare")]
    if task in ("cpt", "prepare"):
        keep = [o for o in keep if not o.startswith("model.")]
    return tuple(keep)
