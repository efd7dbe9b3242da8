"""Long documents are tokenized in bounded pieces with exactly the ids of whole-document encoding, packed into the
same rows, with progress by bytes inside one document."""

from __future__ import annotations

import json

import numpy as np
import pytest
from llm_launch.launcher import PROJECT_ROOT
from llm_launch.train.data import long_text
from llm_launch.train.data.long_text import Continued, encode_long
from llm_launch.train.data.packed import PackedDataset, RowPacker
from llm_launch.train.data.prepare import load_fast_tokenizer, prepare_corpus

TOKENIZER = PROJECT_ROOT / "data" / "sample" / "tokenizer"
CORPUS = PROJECT_ROOT / "data" / "sample" / "corpus" / "train.jsonl"


@pytest.fixture(scope="module")
def tokenizer():
    return load_fast_tokenizer(TOKENIZER)[0]


def _sample_text(chars: int) -> str:
    """Real prose with the whitespace that trips naive cuts: runs of spaces, blank lines, tabs, digits, quotes."""
    texts = [json.loads(line)["text"] for line in CORPUS.read_text().splitlines()[:200]]
    mixed = "\n\n".join(t.replace(". ", ".   ", 3).replace(",", ",\t", 2) + " 1234 'tis  \n" for t in texts)
    return (mixed * (chars // len(mixed) + 1))[:chars]


def _whole(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False).ids


@pytest.mark.parametrize("piece_chars", [3_000, 7_919, 40_000])
def test_pieces_give_the_ids_of_whole_document_encoding(tokenizer, piece_chars):
    text = _sample_text(300_000)
    pieces = list(encode_long(tokenizer, text, piece_chars=piece_chars))
    assert len(pieces) >= 300_000 // piece_chars - 1  # it really was cut, many times
    assert all(isinstance(p, Continued) for p in pieces[:-1]) and not isinstance(pieces[-1], Continued)
    assert [i for p in pieces for i in p] == _whole(tokenizer, text)


def test_every_cut_is_at_whitespace_and_verified_and_bad_cuts_are_passed_over(tokenizer, monkeypatch):
    """A cut inside a run of spaces changes the ids with this tokenizer (the regex gives the last space to the next
    word); the verification must catch such candidates, and the result still equals whole encoding."""
    text = ("word" + " " * 7) * 4000
    cuts, real = [], long_text._cut_verifies

    def recorded(tok, text_, cut, start):
        ok = real(tok, text_, cut, start)
        cuts.append((cut, ok))
        return ok

    monkeypatch.setattr(long_text, "_cut_verifies", recorded)
    pieces = list(encode_long(tokenizer, text, piece_chars=2_000))
    assert len(pieces) > 10
    assert [i for p in pieces for i in p] == _whole(tokenizer, text)
    assert all(text[c].isspace() and not text[c - 1].isspace() for c, _ in cuts)


def test_a_document_without_whitespace_is_encoded_whole_and_said_so(tokenizer, capsys):
    text = "abcdefghij" * 2_000
    pieces = list(encode_long(tokenizer, text, piece_chars=1_000))
    assert [i for p in pieces for i in p] == _whole(tokenizer, text)
    assert "tokenizing a 20,000-character document whole: no cut verified" in capsys.readouterr().out


def test_a_tokenizer_that_changes_every_piece_never_gets_a_wrong_cut():
    """Llama 2's tokenizer.json style: a normalizer prepends '▁' to every input and there is no pre-tokenizer, so
    any two-piece encoding differs from one piece; every cut fails verification and the ids stay the whole ones."""
    from tokenizers import Tokenizer, models, normalizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.train_from_iterator([_sample_text(20_000)], trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>"]))
    text = _sample_text(30_000)
    pieces = list(encode_long(tok, text, piece_chars=5_000))
    assert [i for p in pieces for i in p] == _whole(tok, text)


def test_pieces_pack_into_the_rows_of_the_whole_document():
    rng = np.random.default_rng(0)
    docs = [rng.integers(2, 1000, size=n).tolist() for n in (50, 1_000, 37)]
    whole = RowPacker(16, 1)
    rows = np.stack(list(whole.rows(docs)))
    split = [docs[0], Continued(docs[1][:333]), Continued(docs[1][333:334]), docs[1][334:], docs[2]]
    pieces = RowPacker(16, 1)
    assert np.array_equal(np.stack(list(pieces.rows(split))), rows)
    assert (pieces.documents, pieces.remainder) == (whole.documents, whole.remainder) == (3, whole.remainder)


def test_a_long_jsonl_line_packs_like_whole_encoding_with_progress_by_bytes(tmp_path, tokenizer, monkeypatch, capsys):
    from llm_launch.train.data import prepare

    monkeypatch.setattr(prepare, "PROGRESS_EVERY_S", 0.0)  # every update prints
    monkeypatch.setattr(prepare, "PIECE_CHARS", 20_000)
    long_doc = _sample_text(200_000)
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in ["a short one", long_doc, "and after it"]))
    packed = PackedDataset.open(prepare_corpus(corpus, TOKENIZER, 64, tmp_path / "cache", "text", 2048))
    eos = load_fast_tokenizer(TOKENIZER)[1]
    stream = [i for t in ["a short one", long_doc, "and after it"] for i in [*_whole(tokenizer, t), eos]]
    whole_rows = len(stream) // 64
    assert packed.index["documents"] == 3 and packed.index["num_rows"] == whole_rows
    assert np.array_equal(np.concatenate([packed.row(i) for i in range(whole_rows)]), stream[:whole_rows * 64])
    shares = [line.split("(")[1].split("%")[0] for line in capsys.readouterr().out.splitlines()
              if line.startswith("packing c.jsonl: ") and " MiB tokenized (" in line]
    assert len({s for s in shares if 0 < int(s) < 100}) >= 3, shares  # moving inside the one long document
