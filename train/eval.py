"""Held-out loss and perplexity of a trained model: python -m llm_launch.train.eval --job job.yaml.

The model is model.pretrained_path when set (a Hugging Face folder on GPU, an NxD checkpoint
folder on Trainium), else the newest checkpoint in training.checkpoint.dir. It runs in the
job's layout on the instance's backend, over the validation set a training run of the same job
would use, and writes eval.json (llm_launch.train.trainer.Trainer.evaluate_only).
"""

from llm_launch.train.entry import run_entrypoint
from llm_launch.train.trainer import evaluate_job

if __name__ == "__main__":
    run_entrypoint("eval", job_runner=evaluate_job)
