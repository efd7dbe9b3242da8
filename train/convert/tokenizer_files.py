"""The tokenizer files a converted Hugging Face folder gets from its source, so that it loads with
AutoTokenizer.from_pretrained like a folder the job exported (train/gpu/export.py copies the same files)."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from llm_launch.launcher.jobfile import read_job

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                   "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja", "chat_template.json")
"""The files of a Hugging Face tokenizer folder (those transformers' tokenizers save); copied as they are."""


def tokenizer_sources(args: argparse.Namespace) -> list[Path]:
    """Folders that may hold the source's tokenizer, most specific first: the job's tokenizer_path and
    pretrained_path (--job), the folder of --config, the input folder and its parent."""
    found: list[Path] = []
    if getattr(args, "job", None):
        try:
            job = read_job(args.job)
            found += [Path(p) for p in (job.training.data.tokenizer_path, job.model.pretrained_path) if p]
        except Exception:  # noqa: BLE001 - an unreadable job.yaml was already reported as the model source
            pass
    if getattr(args, "config", None):
        found.append(Path(args.config).parent)
    found += [Path(args.input), Path(args.input).parent]
    return found


def copy_tokenizer_files(args: argparse.Namespace, out: Path) -> Path | None:
    """Copy the tokenizer files of the first source folder that has any into out; the folder, or None."""
    for folder in tokenizer_sources(args):
        files = [folder / name for name in TOKENIZER_FILES if (folder / name).is_file()]
        if files:
            for file in files:
                shutil.copyfile(file, out / file.name)
            return folder
    return None
