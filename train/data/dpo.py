"""Preference data for DPO: validated (prompt, chosen, rejected) records, tokenized, and their reader.

Input records (JSONL): {"prompt": str, "chosen": str, "rejected": str}, all non-empty after
stripping, chosen != rejected. Anything else (malformed JSON, undecodable bytes, a missing or
non-string field, an empty field, identical responses) is counted in index.json's "bad_records"
with examples; it never stops the run.

Each pair is rendered like an SFT chat [user: prompt, assistant: response] (train/data/sft.py: the
tokenizer's chat template, else the plain default template), so prompt_ids are the tokens before the
answer and chosen_ids / rejected_ids the answer tokens including the closing EOS (or the template's
end-of-turn tokens). When prompt + the longer response exceed seq_len, responses are first cut to
seq_len // 2 tokens and then the prompt loses tokens from its start (left truncation); such pairs
are counted in truncated_pairs.

Output folder (format "llm-launch-preference" v1):
    index.json   {"format": "llm-launch-preference", "version": 1, "pairs": N, "seq_len": ...,
                  "eos_id": ..., "pad_id": ..., "truncated_pairs": ..., "bad_records": {...}, ...}
    pairs.jsonl  one {"prompt_ids": [...], "chosen_ids": [...], "rejected_ids": [...]} per line
PreferenceDataset.open(folder) reads it: len(), dataset[i] -> PreferencePair.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from llm_launch.launcher.jsonl import Tally, iter_jsonl
from llm_launch.train.data.packed import read_index
from llm_launch.train.data.prepare import fingerprint
from llm_launch.train.data.sft import encode_sft_example, load_hf_tokenizer, pad_id_of, tokenizer_files

PREFERENCE_FORMAT = "llm-launch-preference"
PREFERENCE_VERSION = 1
INDEX_FILE = "index.json"
PAIRS_FILE = "pairs.jsonl"
FIELDS = ("prompt", "chosen", "rejected")


class BadPair(ValueError):
    """A preference record that fails validation."""

    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind = kind


@dataclass(frozen=True)
class PreferencePair:
    """One tokenized preference pair."""

    prompt_ids: list[int]
    """Prompt tokens, as rendered before the answer (chat template or default template)."""
    chosen_ids: list[int]
    """Preferred answer tokens, ending with EOS (or the template's end-of-turn tokens)."""
    rejected_ids: list[int]
    """Dispreferred answer tokens, ending the same way."""


def validate_pair(record: object) -> tuple[str, str, str]:
    """(prompt, chosen, rejected) of a valid record; raises BadPair naming what is wrong."""
    if not isinstance(record, dict):
        raise BadPair("not_an_object", f"a JSON {type(record).__name__}, not an object")
    for name in FIELDS:
        if name not in record:
            raise BadPair("missing_field", f"no '{name}' field")
        if not isinstance(record[name], str):
            raise BadPair("non_string_field", f"'{name}' is a {type(record[name]).__name__}, not a string")
        if not record[name].strip():
            raise BadPair("empty_field", f"'{name}' is empty")
    if record["chosen"].strip() == record["rejected"].strip():
        raise BadPair("identical_responses", "chosen and rejected are the same text")
    return record["prompt"], record["chosen"], record["rejected"]


def _split(prompt: str, response: str, tokenizer) -> tuple[list[int], list[int]]:
    ids, mask = encode_sft_example({"messages": [{"role": "user", "content": prompt},
                                                 {"role": "assistant", "content": response}]}, tokenizer)
    start = mask.index(1)
    return ids[:start], ids[start:]


def encode_pair(prompt: str, chosen: str, rejected: str, tokenizer, seq_len: int) -> tuple[PreferencePair, bool]:
    """The tokenized pair, truncated to fit seq_len as the module docstring says, and whether it was cut."""
    prompt_ids, chosen_ids = _split(prompt, chosen, tokenizer)
    other_prompt, rejected_ids = _split(prompt, rejected, tokenizer)
    if other_prompt != prompt_ids:
        raise ValueError("the chat template renders the prompt differently for the two responses")
    cut = False
    if len(prompt_ids) + max(len(chosen_ids), len(rejected_ids)) > seq_len:
        cut = True
        half = seq_len // 2
        chosen_ids, rejected_ids = chosen_ids[:half], rejected_ids[:half]
        room = seq_len - max(len(chosen_ids), len(rejected_ids))
        prompt_ids = prompt_ids[len(prompt_ids) - room:] if room > 0 else []
    return PreferencePair(prompt_ids, chosen_ids, rejected_ids), cut


def prepare_dpo(corpus: Path, tokenizer_dir: Path, seq_len: int, cache_root: Path) -> Path:
    """Validate and tokenize a preference JSONL file into a cached preference folder; returns its path."""
    corpus, tokenizer_dir = Path(corpus), Path(tokenizer_dir)
    key = fingerprint(corpus, tokenizer_dir, seq_len, *tokenizer_files(tokenizer_dir), f"dpo-v{PREFERENCE_VERSION}")
    out = Path(cache_root) / f"{corpus.stem}-dpo-seq{seq_len}-{key}"
    if (out / INDEX_FILE).is_file():
        return out
    tokenizer = load_hf_tokenizer(tokenizer_dir)
    tally = Tally()
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    pairs = truncated = 0
    with (tmp / PAIRS_FILE).open("w", encoding="utf-8") as lines:
        for where, record in iter_jsonl(corpus, tally):
            try:
                pair, cut = encode_pair(*validate_pair(record), tokenizer, seq_len)
            except BadPair as exc:
                tally.add(exc.kind, where, str(exc))
                continue
            lines.write(json.dumps({"prompt_ids": pair.prompt_ids, "chosen_ids": pair.chosen_ids,
                                    "rejected_ids": pair.rejected_ids}) + "\n")
            pairs += 1
            truncated += cut
    if pairs == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ValueError(f"{corpus} holds no valid preference record ({tally.total} bad: {sorted(tally.counts)})")
    index = {"format": PREFERENCE_FORMAT, "version": PREFERENCE_VERSION, "pairs": pairs, "seq_len": seq_len,
             "eos_id": tokenizer.eos_token_id, "pad_id": pad_id_of(tokenizer), "truncated_pairs": truncated,
             "bad_records": {"total": tally.total, "kinds": tally.to_dict()}, "source": str(corpus),
             "tokenizer": str(tokenizer_dir), "fingerprint": key}
    (tmp / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


class PreferenceDataset:
    """Random access to the pairs of a preference folder (line offsets kept, lines parsed on demand)."""

    def __init__(self, path: Path, index: dict, offsets: list[int]):
        self.path, self.index, self._offsets = path, index, offsets

    @classmethod
    def open(cls, path: str | Path) -> PreferenceDataset:
        path = Path(path)
        index = read_index(path, PREFERENCE_FORMAT, PREFERENCE_VERSION)
        offsets, position = [], 0
        with (path / PAIRS_FILE).open("rb") as lines:
            for line in lines:
                offsets.append(position)
                position += len(line)
        return cls(path, index, offsets)

    def __len__(self) -> int:
        return len(self._offsets)

    def __getitem__(self, i: int) -> PreferencePair:
        if not 0 <= i < len(self):
            raise IndexError(i)
        with (self.path / PAIRS_FILE).open("rb") as lines:
            lines.seek(self._offsets[i])
            record = json.loads(lines.readline())
        return PreferencePair(record["prompt_ids"], record["chosen_ids"], record["rejected_ids"])


class PairRows:
    """Preference pairs as the rows the step sampler hands out (llm_launch.train.data.loader.StepBatches).

    Row i is pair i as a [2, seq_len] array: prompt + chosen, then prompt + rejected, padded with the
    tokenizer's pad id; its loss mask marks the response tokens. One "row" per pair keeps a pair's two
    sequences in the same micro-batch, so training.global_batch_size counts pairs.
    """

    has_loss_mask = True

    def __init__(self, pairs: PreferenceDataset):
        self.pairs, self.path, self.index = pairs, pairs.path, pairs.index
        self.seq_len = int(pairs.index["seq_len"])
        self.pad_id = int(pairs.index["pad_id"])

    def __len__(self) -> int:
        return len(self.pairs)

    def _spans(self, i: int) -> tuple[PreferencePair, list[tuple[int, int]]]:
        pair = self.pairs[i]
        start = len(pair.prompt_ids)
        return pair, [(start, start + len(pair.chosen_ids)), (start, start + len(pair.rejected_ids))]

    def row(self, i: int) -> np.ndarray:
        pair, spans = self._spans(i)
        out = np.full((2, self.seq_len), self.pad_id, dtype=np.int64)
        for side, (response, (_, end)) in enumerate(zip((pair.chosen_ids, pair.rejected_ids), spans, strict=True)):
            out[side, :end] = pair.prompt_ids + response
        return out

    def row_mask(self, i: int) -> np.ndarray:
        _, spans = self._spans(i)
        mask = np.zeros((2, self.seq_len), dtype=np.uint8)
        for side, (start, end) in enumerate(spans):
            mask[side, start:end] = 1
        return mask
