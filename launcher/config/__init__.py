"""Structured config schema and its registration with Hydra."""
