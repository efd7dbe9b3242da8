"""The GPU backend: transformers models parallelised with FSDP2, tensor and pipeline parallelism, DCP checkpoints.

Everything here runs on NVIDIA GPUs (nccl) and, for tests and the default tiny run, on the
CPU with gloo. The loop that drives it is llm_launch.train.trainer; llm_launch.train.gpu.backend adapts it.
"""
