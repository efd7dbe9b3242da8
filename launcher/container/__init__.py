"""Code that runs inside a job's container before torchrun (no torch imports)."""
