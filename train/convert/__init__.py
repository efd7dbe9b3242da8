"""Checkpoint conversion between Hugging Face, NxD sharded and DCP layouts (llm-launch-convert)."""
