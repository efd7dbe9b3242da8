"""Supervised fine-tuning, full or LoRA: python -m llm_launch.train.sft --job job.yaml.

The data is instruction ({instruction, input, output}) or chat ({messages}) JSONL, or shards
already packed with a loss mask; the loss counts only the answer tokens.
"""

from llm_launch.train.entry import run_entrypoint

if __name__ == "__main__":
    run_entrypoint("sft")
