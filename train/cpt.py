"""Continual pre-training (and pre-training from scratch): python -m llm_launch.train.cpt --job job.yaml."""

from llm_launch.train.entry import run_entrypoint

if __name__ == "__main__":
    run_entrypoint("cpt")
