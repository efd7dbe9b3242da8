"""Preference data: records validated and counted, pairs tokenized and read back."""

import pytest
from llm_launch.launcher import PROJECT_ROOT
from llm_launch.train.data.dpo import BadPair, PreferenceDataset, encode_pair, prepare_dpo, validate_pair
from llm_launch.train.data.sft import load_hf_tokenizer

SAMPLE = PROJECT_ROOT / "data" / "sample"


@pytest.mark.parametrize(("record", "kind"), [
    ("text", "not_an_object"),
    ({"prompt": "Q", "chosen": "A"}, "missing_field"),
    ({"prompt": "Q", "chosen": 1, "rejected": "B"}, "non_string_field"),
    ({"prompt": " ", "chosen": "A", "rejected": "B"}, "empty_field"),
    ({"prompt": "Q", "chosen": "A", "rejected": " A "}, "identical_responses"),
])
def test_invalid_records_are_named(record, kind):
    with pytest.raises(BadPair) as caught:
        validate_pair(record)
    assert caught.value.kind == kind


def test_pairs_share_the_prompt_and_end_with_eos():
    tokenizer = load_hf_tokenizer(SAMPLE / "tokenizer")
    pair, cut = encode_pair("Which book follows Genesis?", "Exodus.", "Ruth.", tokenizer, 256)
    assert not cut
    assert tokenizer.decode(pair.prompt_ids) == "### User:\nWhich book follows Genesis?\n\n### Assistant:\n"
    assert pair.chosen_ids[-1] == pair.rejected_ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(pair.chosen_ids[:-1]) == "Exodus."
    long_pair, cut = encode_pair("word " * 300, "yes " * 200, "no", tokenizer, 64)
    assert cut and len(long_pair.prompt_ids) + len(long_pair.chosen_ids) <= 64
    assert long_pair.prompt_ids[-3:] == pair.prompt_ids[-3:]  # the prompt keeps its end


def test_prepare_dpo_writes_the_format_and_counts_bad_records(tmp_path):
    corpus = tmp_path / "prefs.jsonl"
    good = (SAMPLE / "sft" / "preference.jsonl").read_text(encoding="utf-8")
    corpus.write_text(good + '{"prompt": "Q", "chosen": "A", "rejected": "A"}\nnot json\n', encoding="utf-8")
    path = prepare_dpo(corpus, SAMPLE / "tokenizer", 256, tmp_path / "cache")
    dataset = PreferenceDataset.open(path)
    assert len(dataset) == len(good.splitlines()) == dataset.index["pairs"]
    assert dataset.index["format"] == "llm-launch-preference"
    assert {k: v["count"] for k, v in dataset.index["bad_records"]["kinds"].items()} == {
        "identical_responses": 1, "malformed_json": 1}
    last = dataset[len(dataset) - 1]
    assert last.chosen_ids != last.rejected_ids and last.prompt_ids
    with pytest.raises(IndexError):
        dataset[len(dataset)]
