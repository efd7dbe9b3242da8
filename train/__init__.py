"""Training entrypoints started by torchrun inside a job; they read the launcher's job.yaml."""
