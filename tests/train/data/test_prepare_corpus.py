"""A raw corpus packed at job start: a bad line stops the job naming its file and line; SFT skips and says so."""

import json

import pytest
from llm_launch.launcher import PROJECT_ROOT
from llm_launch.train.data.packed import INDEX_FILE, PackedDataset
from llm_launch.train.data.prepare import prepare_corpus

TOKENIZER = PROJECT_ROOT / "data" / "sample" / "tokenizer"


def _pack(corpus, tmp_path):
    return prepare_corpus(corpus, TOKENIZER, 16, tmp_path / "cache", "text", 2048)


def test_good_corpus_packs_and_reports_progress(tmp_path, capsys):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"text": f"In the beginning {i}"}) + "\n" for i in range(40)))
    dataset = PackedDataset.open(_pack(corpus, tmp_path))
    assert len(dataset) > 0
    out = capsys.readouterr().out
    assert f"packing {corpus}" in out and "packed c.jsonl:" in out


@pytest.mark.parametrize(("line", "message"), [
    (b'{"text": "ok"\n', r"c\.jsonl:3: not valid JSON \(Expecting ',' delimiter at column 14\); fix or remove"),
    (b'{"text": "ok\n', r"c\.jsonl:3: not valid JSON \(Unterminated string starting at column 10\); fix or remove"),
    (b'{"text": "caf\xe9"}\n', r"c\.jsonl:3: not valid UTF-8 \(byte 14 of the line is b'\\xe9'\)"),
    (b'["text"]\n', r"c\.jsonl:3: no 'text' field"),
    (b'{"text": 5}\n', r"c\.jsonl:3: 'text' is a int, not a string"),
])
def test_a_bad_jsonl_line_stops_packing_naming_file_and_line(tmp_path, line, message):
    corpus = tmp_path / "c.jsonl"
    corpus.write_bytes(b'{"text": "one"}\n\n' + line + b'{"text": "four"}\n')
    with pytest.raises(ValueError, match=message):
        _pack(corpus, tmp_path)
    assert not any((tmp_path / "cache").glob("*/" + INDEX_FILE))  # nothing half-packed is left to reuse
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")]


def test_text_corpus_with_invalid_utf8_names_its_line(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_bytes(b"first line\nsecond \xff line\n")
    with pytest.raises(ValueError, match=r"c\.txt:2: not valid UTF-8 \(byte 19 of the file"):
        _pack(corpus, tmp_path)


def test_sft_corpus_skips_bad_lines_and_says_where(tmp_path, capsys):
    from llm_launch.train.data.sft import prepare_sft

    good = (PROJECT_ROOT / "data" / "sample" / "sft" / "train.jsonl").read_bytes().splitlines(keepends=True)[:10]
    corpus = tmp_path / "s.jsonl"
    corpus.write_bytes(b"".join(good[:4]) + b"{oops\n" + b"\xff\xfe\n" + b"".join(good[4:]))
    index = json.loads((prepare_sft(corpus, TOKENIZER, 256, tmp_path / "cache", 2048) / INDEX_FILE).read_text())
    assert index["bad_records"]["total"] == 2
    assert f"{corpus}: skipped 2 bad records (e.g. {corpus}:5: " in capsys.readouterr().out
