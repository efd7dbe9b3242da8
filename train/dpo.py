"""Preference tuning (DPO, conservative DPO, IPO), full or LoRA: python -m llm_launch.train.dpo --job job.yaml.

The data is preference JSONL ({prompt, chosen, rejected}); the policy starts from model.pretrained_path
and the reference is the same model frozen (or, with LoRA, the base model with the adapters off).
See docs/dpo.md.
"""

from llm_launch.train.entry import run_entrypoint

if __name__ == "__main__":
    run_entrypoint("dpo")
