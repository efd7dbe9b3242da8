"""llm-launch: plan, check, render and submit LLM training jobs (no torch imported here)."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
"""The checkout (or installed source tree) holding conf/, recipes/ and data/."""
