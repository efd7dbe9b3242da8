"""Supervised fine-tuning data: records to token ids and a loss mask, packed into rows.

CONTRACT with the training engine (stable; change only together with its reader):

Records (one JSON object per line of a .jsonl file), either
    instruction: {"instruction": str, "input": str (optional), "output": str}
                 read as the chat [user: instruction + "\\n\\n" + input, assistant: output]
    chat:        {"messages": [{"role": "system" | "user" | "assistant", "content": str}, ...]}
                 at least one assistant message, the last message is the assistant's, and no assistant
                 message before the first user message.

encode_sft_example(record, tokenizer) -> (ids, mask), lists of equal length. mask[t] = 1 marks a token
the model must learn to predict: every token of each assistant answer and the EOS that closes it
(with a chat template: the template's tokens of the assistant turn, including its end-of-turn
token). mask[t] = 0 for system, user and template prompt tokens (and, after packing, padding).
The mask is aligned with the ids (not shifted): the engine sets labels = ids where mask == 1, else
-100, and the usual next-token shift follows.

Rendering: tokenizer.apply_chat_template when the tokenizer has a chat template (each assistant turn
is the difference between the conversation rendered up to it with add_generation_prompt=True and
rendered with it; the template must render prefixes stably). Otherwise the plain default template,
with no BOS:
    "### System:\\n{content}\\n\\n"      mask 0
    "### User:\\n{content}\\n\\n"        mask 0
    "### Assistant:\\n"                 mask 0
    "{content}" + EOS id                mask 1
Each piece is tokenized on its own (add_special_tokens=False) and the ids concatenated, so masks
fall exactly on piece boundaries.

Packing (pack_sft_rows, prepare_sft): examples are never split across rows. Rows are filled greedily
in input order with whole examples; when the next example does not fit, the row is closed and its
tail padded with pad_id (the tokenizer's pad token, else EOS) and mask 0. An example longer than
seq_len is cut to its first seq_len tokens and counted (truncated_examples, truncated_tokens).
Examples packed into one row are separated only by their closing EOS (no attention mask between
them). The output is an llm-launch-packed v1 folder (train/data/packed.py) whose index.json has
"loss_mask": true, "pad_id", and per shard "mask_file": "shard_XXXXX.mask.bin" (uint8, one entry per
token id); PackedDataset.row(i) and row_mask(i) read it. Bad records (lines that are not UTF-8 or not
JSON, records of neither format) are counted in index.json's "bad_records" with examples (file:line) and
skipped, with one printed line naming the first; they never stop the run (a corpus with no valid record does).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from llm_launch.launcher.jsonl import Tally, iter_jsonl
from llm_launch.train.data.packed import INDEX_FILE, write_masked_packed
from llm_launch.train.data.prepare import fingerprint

ROLES = ("system", "user", "assistant")
DEFAULT_HEADERS = {"system": "### System:\n", "user": "### User:\n", "assistant": "### Assistant:\n"}
TURN_END = "\n\n"
SFT_VERSION = "sft-v1"


class BadRecord(ValueError):
    """A record that is neither a valid instruction nor a valid chat record."""

    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind = kind


def record_messages(record: object) -> list[dict[str, str]]:
    """The record as a validated list of chat messages."""
    if not isinstance(record, dict):
        raise BadRecord("not_an_object", f"a JSON {type(record).__name__}, not an object")
    if "messages" in record:
        messages = record["messages"]
        if not isinstance(messages, list) or not messages:
            raise BadRecord("bad_messages", "messages must be a non-empty list")
        for m in messages:
            if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
                raise BadRecord("bad_messages", f"each message needs role in {ROLES} and string content: {m!r}")
        roles = [m["role"] for m in messages]
        if roles[-1] != "assistant":
            raise BadRecord("bad_messages", "the last message must be the assistant's answer")
        if "user" not in roles or roles.index("assistant") < roles.index("user"):
            raise BadRecord("bad_messages", "an assistant message comes before any user message")
        if any(not m["content"].strip() for m in messages if m["role"] == "assistant"):
            raise BadRecord("empty_answer", "an assistant message is empty")
        return [{"role": m["role"], "content": m["content"]} for m in messages]
    if "instruction" in record or "output" in record:
        instruction, extra, output = record.get("instruction"), record.get("input") or "", record.get("output")
        if not isinstance(instruction, str) or not isinstance(output, str) or not isinstance(extra, str):
            raise BadRecord("bad_instruction", "instruction and output must be strings (input optional)")
        if not instruction.strip() or not output.strip():
            raise BadRecord("empty_answer" if instruction.strip() else "bad_instruction",
                            "instruction and output must be non-empty")
        prompt = f"{instruction}\n\n{extra}" if extra.strip() else instruction
        return [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]
    raise BadRecord("unknown_record", "neither an instruction record (instruction, output) nor a chat "
                    "record (messages)")


def _default_segments(messages: list[dict[str, str]]) -> list[tuple[str, bool, bool]]:
    """(text, trained, close with EOS) pieces of the plain default template."""
    pieces = []
    for m in messages:
        if m["role"] == "assistant":
            pieces += [(DEFAULT_HEADERS["assistant"], False, False), (m["content"], True, True)]
        else:
            pieces.append((f"{DEFAULT_HEADERS[m['role']]}{m['content']}{TURN_END}", False, False))
    return pieces


def _template_segments(messages: list[dict[str, str]], tokenizer) -> list[tuple[str, bool, bool]]:
    """(text, trained, close with EOS) pieces rendered by the tokenizer's chat template."""
    pieces, rendered = [], ""
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prompt = tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(messages[:i + 1], tokenize=False)
        if not prompt.startswith(rendered) or not full.startswith(prompt):
            raise ValueError("the chat template does not render conversations prefix by prefix; loss masks "
                             "cannot be derived from it")
        pieces += [(prompt[len(rendered):], False, False), (full[len(prompt):], True, False)]
        rendered = full
    return pieces


def encode_sft_example(record: dict, tokenizer) -> tuple[list[int], list[int]]:
    """Token ids and loss mask of one instruction or chat record (see the module docstring)."""
    messages = record_messages(record)
    if getattr(tokenizer, "chat_template", None):
        pieces = _template_segments(messages, tokenizer)
    else:
        pieces = _default_segments(messages)
    ids: list[int] = []
    mask: list[int] = []
    for text, trained, close in pieces:
        piece = tokenizer.encode(text, add_special_tokens=False) if text else []
        if close:
            piece = [*piece, tokenizer.eos_token_id]
        ids += piece
        mask += [int(trained)] * len(piece)
    return ids, mask


class SftPacker:
    """Whole examples into rows of seq_len, padded; counts what it truncates and pads."""

    def __init__(self, seq_len: int, pad_id: int):
        self.seq_len, self.pad_id = seq_len, pad_id
        self.examples = self.truncated_examples = self.truncated_tokens = self.padding_tokens = 0
        self.trained_tokens = 0

    def _row(self, ids: list[int], mask: list[int]) -> tuple[np.ndarray, np.ndarray]:
        pad = self.seq_len - len(ids)
        self.padding_tokens += pad
        return (np.asarray(ids + [self.pad_id] * pad, dtype=np.int64),
                np.asarray(mask + [0] * pad, dtype=np.uint8))

    def rows(self, examples: Iterable[tuple[list[int], list[int]]]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        ids: list[int] = []
        mask: list[int] = []
        for example_ids, example_mask in examples:
            self.examples += 1
            if len(example_ids) > self.seq_len:
                self.truncated_examples += 1
                self.truncated_tokens += len(example_ids) - self.seq_len
                example_ids, example_mask = example_ids[:self.seq_len], example_mask[:self.seq_len]
            self.trained_tokens += sum(example_mask)
            if len(ids) + len(example_ids) > self.seq_len:
                yield self._row(ids, mask)
                ids, mask = [], []
            ids += example_ids
            mask += example_mask
        if ids:
            yield self._row(ids, mask)

    def stats(self) -> dict[str, int]:
        return {"examples": self.examples, "truncated_examples": self.truncated_examples,
                "truncated_tokens": self.truncated_tokens, "padding_tokens": self.padding_tokens,
                "trained_tokens": self.trained_tokens}


def load_hf_tokenizer(tokenizer_dir: Path):
    """The transformers tokenizer of a folder (it carries the chat template)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tokenizer_dir))


def pad_id_of(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def tokenizer_files(tokenizer_dir: Path) -> list[Path]:
    """Files besides tokenizer.json that change how records render (chat template, special tokens)."""
    return [tokenizer_dir / name for name in ("tokenizer_config.json", "chat_template.jinja",
                                              "special_tokens_map.json")]


def prepare_sft(corpus: Path, tokenizer_dir: Path, seq_len: int, cache_root: Path, vocab_size: int) -> Path:
    """Return a packed, loss-masked dataset for an SFT JSONL corpus, writing it under cache_root unless a
    current copy exists (same corpus bytes, tokenizer files and seq_len)."""
    corpus, tokenizer_dir = Path(corpus), Path(tokenizer_dir)
    key = fingerprint(corpus, tokenizer_dir, seq_len, *tokenizer_files(tokenizer_dir), SFT_VERSION)
    out = Path(cache_root) / f"{corpus.stem}-sft-seq{seq_len}-{key}"
    if (out / INDEX_FILE).is_file():
        return out
    tally = Tally()
    pack_sft_records(out, iter_jsonl(corpus, tally), tokenizer_dir, seq_len, vocab_size, tally,
                     {"source": str(corpus), "tokenizer": str(tokenizer_dir), "fingerprint": key})
    return out


def pack_sft_records(out: Path, records: Iterable[tuple[str, object]], tokenizer_dir: Path, seq_len: int,
                     vocab_size: int, tally: Tally, metadata: dict) -> dict:
    """Write (place, record) pairs as a packed, loss-masked dataset in out; bad records are counted in tally
    and skipped (one printed line names the first); no valid record at all raises ValueError."""
    tokenizer = load_hf_tokenizer(tokenizer_dir)
    packer = SftPacker(seq_len, pad_id_of(tokenizer))
    template = "chat_template" if getattr(tokenizer, "chat_template", None) else "default"
    source = metadata.get("source", out.name)

    def encoded() -> Iterator[tuple[list[int], list[int]]]:
        for where, record in records:
            try:
                yield encode_sft_example(record, tokenizer)
            except BadRecord as exc:
                tally.add(exc.kind, where, str(exc))

    def index_fields() -> dict:
        if packer.examples == 0:
            raise ValueError(f"{source} holds no valid SFT record ({tally.total} bad: {sorted(tally.counts)}); see "
                             "train/data/sft.py for the record formats")
        return {**metadata, "template": template, "documents": packer.examples,
                **packer.stats(), "bad_records": {"total": tally.total, "kinds": tally.to_dict()}}

    index = write_masked_packed(out, packer.rows(encoded()), seq_len=seq_len, eos_id=tokenizer.eos_token_id,
                                pad_id=packer.pad_id, vocab_size=vocab_size, metadata=index_fields)
    if tally.total:
        first = min((e for examples in tally.examples.values() for e in examples), key=lambda e: _line_of(e["where"]))
        print(f"{source}: skipped {tally.total} bad records (e.g. {first['where']}: {first.get('detail', '')}); "
              f"counts by kind in {out / INDEX_FILE} (bad_records)", flush=True)
    return index


def _line_of(where: str) -> int:
    """The line number of a path:line place (0 when it has none)."""
    tail = where.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else 0
