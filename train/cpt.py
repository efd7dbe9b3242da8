"""Continual pre-training (and pre-training from scratch): python -m train.cpt --job job.yaml."""

from train.entry import run_entrypoint

if __name__ == "__main__":
    run_entrypoint("cpt")
