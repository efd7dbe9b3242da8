"""Training data: the packed token-shard format, a small writer, and the step-indexed loader."""
