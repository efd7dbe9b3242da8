"""SFT: the loss mask covers exactly the answers and their EOS; packing never splits an example."""

import json

import numpy as np
import pytest
from llm_launch.launcher import PROJECT_ROOT
from llm_launch.train.data.packed import PackedDataset
from llm_launch.train.data.sft import BadRecord, SftPacker, encode_sft_example, load_hf_tokenizer, prepare_sft

SAMPLE = PROJECT_ROOT / "data" / "sample"
CHATML = ("{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
          "{% if add_generation_prompt %}<s>assistant\n{% endif %}")


@pytest.fixture(scope="module")
def tokenizer():
    return load_hf_tokenizer(SAMPLE / "tokenizer")


def trained_text(tokenizer, ids, mask) -> str:
    return tokenizer.decode([i for i, m in zip(ids, mask, strict=True) if m])


def test_instruction_mask_is_the_answer_and_its_eos(tokenizer):
    record = {"instruction": "Which book follows Genesis?", "input": "Answer briefly.", "output": "Exodus."}
    ids, mask = encode_sft_example(record, tokenizer)
    assert len(ids) == len(mask)
    answer = tokenizer.encode("Exodus.", add_special_tokens=False)
    first = mask.index(1)
    assert ids[first:] == [*answer, tokenizer.eos_token_id]
    assert all(m == 1 for m in mask[first:]) and not any(mask[:first])
    prompt = tokenizer.decode(ids[:first])
    assert prompt == "### User:\nWhich book follows Genesis?\n\nAnswer briefly.\n\n### Assistant:\n"


def test_chat_mask_covers_every_assistant_turn_and_nothing_else(tokenizer):
    record = {"messages": [{"role": "system", "content": "Quote exactly."},
                           {"role": "user", "content": "Genesis 1:1?"},
                           {"role": "assistant", "content": "In the beginning God created the heaven and the earth."},
                           {"role": "user", "content": "And the next verse?"},
                           {"role": "assistant", "content": "And the earth was without form, and void."}]}
    ids, mask = encode_sft_example(record, tokenizer)
    eos = tokenizer.eos_token
    assert trained_text(tokenizer, ids, mask) == (f"In the beginning God created the heaven and the earth.{eos}"
                                                  f"And the earth was without form, and void.{eos}")
    untrained = tokenizer.decode([i for i, m in zip(ids, mask, strict=True) if not m])
    assert "Quote exactly." in untrained and "And the next verse?" in untrained
    assert "In the beginning" not in untrained


def test_chat_template_is_used_when_the_tokenizer_has_one(tokenizer):
    templated = load_hf_tokenizer(SAMPLE / "tokenizer")
    templated.chat_template = CHATML
    record = {"messages": [{"role": "user", "content": "Who?"}, {"role": "assistant", "content": "Moses."}]}
    ids, mask = encode_sft_example(record, templated)
    assert templated.decode(ids) == "<s>user\nWho?</s>\n<s>assistant\nMoses.</s>\n"
    assert trained_text(templated, ids, mask) == "Moses.</s>\n"


@pytest.mark.parametrize(("record", "kind"), [
    ([1, 2], "not_an_object"),
    ({"text": "plain"}, "unknown_record"),
    ({"instruction": "Q", "output": ""}, "empty_answer"),
    ({"instruction": 3, "output": "A"}, "bad_instruction"),
    ({"messages": [{"role": "user", "content": "Q"}]}, "bad_messages"),
    ({"messages": [{"role": "assistant", "content": "A"}, {"role": "user", "content": "Q"},
                   {"role": "assistant", "content": "A"}]}, "bad_messages"),
    ({"messages": [{"role": "robot", "content": "Q"}, {"role": "assistant", "content": "A"}]}, "bad_messages"),
])
def test_bad_records_are_rejected_by_kind(tokenizer, record, kind):
    with pytest.raises(BadRecord) as caught:
        encode_sft_example(record, tokenizer)
    assert caught.value.kind == kind


def test_packing_never_splits_an_example_and_pads_with_mask_zero():
    rng = np.random.default_rng(0)
    examples = []
    for n in rng.integers(3, 20, size=60):
        ids = rng.integers(10, 100, size=int(n)).tolist()
        cut = int(rng.integers(1, n))
        examples.append((ids, [0] * cut + [1] * (int(n) - cut)))
    examples.append((list(range(10, 50)), [1] * 40))  # longer than seq_len: truncated
    packer = SftPacker(seq_len=24, pad_id=2)
    rows = list(packer.rows(examples))
    stream = [t for ids, mask in rows for t, m in zip(ids.tolist(), mask.tolist(), strict=True)
              if not (t == 2 and m == 0)]
    expected = [t for ids, _ in examples[:-1] for t in ids] + list(range(10, 34))
    assert stream == expected  # every example whole, in order, only padding added
    position = 0
    for ids, mask in rows:  # each row is whole examples then padding
        content = [t for t in ids.tolist() if t != 2]
        while content:
            example = examples[position][0][:24]
            assert content[:len(example)] == example
            content = content[len(example):]
            position += 1
        assert all(m == 0 for t, m in zip(ids.tolist(), mask.tolist(), strict=True) if t == 2)
    assert position == len(examples)
    assert packer.truncated_examples == 1 and packer.truncated_tokens == 16


def test_prepare_sft_writes_masked_shards_and_counts_bad_records(tmp_path, tokenizer):
    corpus = tmp_path / "sft.jsonl"
    lines = (SAMPLE / "sft" / "train.jsonl").read_text(encoding="utf-8").splitlines()
    corpus.write_text("\n".join(lines + ['{"broken', '{"text": "no"}']) + "\n", encoding="utf-8")
    path = prepare_sft(corpus, SAMPLE / "tokenizer", 256, tmp_path / "cache", 2048)
    assert prepare_sft(corpus, SAMPLE / "tokenizer", 256, tmp_path / "cache", 2048) == path  # cached
    dataset = PackedDataset.open(path)
    index = json.loads((path / "index.json").read_text())
    assert dataset.has_loss_mask and index["loss_mask"] is True and index["pad_id"] == 2
    assert all(s["mask_file"].endswith(".mask.bin") for s in index["shards"])
    assert index["examples"] == len(lines) and index["truncated_examples"] == 0
    assert index["bad_records"]["total"] == 2
    assert set(index["bad_records"]["kinds"]) == {"malformed_json", "unknown_record"}
    trained = sum(int(dataset.row_mask(i).sum()) for i in range(len(dataset)))
    assert trained == index["trained_tokens"]
    expected = sum(sum(encode_sft_example(json.loads(line), tokenizer)[1]) for line in lines)
    assert trained == expected


def test_row_mask_is_none_for_pretraining_data(tmp_path):
    from llm_launch.train.data.packed import write_packed

    write_packed(tmp_path / "ds", [[5, 6, 7]] * 10, seq_len=4, eos_id=1, vocab_size=100)
    dataset = PackedDataset.open(tmp_path / "ds")
    assert not dataset.has_loss_mask and dataset.row_mask(0) is None
