"""The packed-shard format: nothing lost, deterministic, readable row by row."""

import hashlib
import json

import numpy as np
import pytest

from train.data.packed import INDEX_FILE, PackedDataset, token_dtype, write_packed


def _docs(seed: int, count: int, vocab: int) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(4, vocab, size=int(rng.integers(1, 40))).tolist() for _ in range(count)]


def _tree_hash(path) -> str:
    digest = hashlib.sha256()
    for file in sorted(path.iterdir()):
        digest.update(file.name.encode() + file.read_bytes())
    return digest.hexdigest()


def test_packing_loses_no_token(tmp_path):
    docs = _docs(0, 200, 2048)
    index = write_packed(tmp_path / "ds", docs, seq_len=16, eos_id=1, vocab_size=2048, rows_per_shard=7)
    tokens_in = sum(len(d) + 1 for d in docs)  # each document plus its EOS
    assert index["num_rows"] * 16 + index["remainder_tokens"] == tokens_in
    assert index["documents"] == 200
    assert len(index["shards"]) == -(-index["num_rows"] // 7)

    stream = [t for d in docs for t in (*d, 1)]
    ds = PackedDataset.open(tmp_path / "ds")
    rows = np.concatenate([ds.row(i) for i in range(len(ds))])
    assert rows.tolist() == stream[: len(rows)]


def test_packing_is_deterministic(tmp_path):
    for name in ("a", "b"):
        write_packed(tmp_path / name, _docs(3, 50, 70000), seq_len=8, eos_id=1, vocab_size=70000)
    assert _tree_hash(tmp_path / "a") == _tree_hash(tmp_path / "b")
    assert json.loads((tmp_path / "a" / INDEX_FILE).read_text())["dtype"] == "uint32"


def test_token_dtype_is_narrowest():
    assert token_dtype(65536) == np.uint16
    assert token_dtype(65537) == np.uint32


def test_rejects_foreign_folder_and_bad_rows(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / INDEX_FILE).write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="not an llm-launch-packed"):
        PackedDataset.open(tmp_path / "x")
    write_packed(tmp_path / "ds", _docs(1, 10, 100), seq_len=4, eos_id=1, vocab_size=100)
    ds = PackedDataset.open(tmp_path / "ds")
    with pytest.raises(IndexError):
        ds.row(len(ds))


def test_vectorised_packing_matches_the_row_packer():
    from train.data.packed import RowPacker, pack_documents

    docs = _docs(5, 120, 2048)
    packer = RowPacker(16, 1)
    rows = np.stack(list(packer.rows(docs)))
    flat, remainder, documents = pack_documents(docs, seq_len=16, eos_id=1, dtype=np.dtype(np.uint16))
    assert flat.reshape(-1, 16).tolist() == rows.tolist()
    assert (remainder, documents) == (packer.remainder, packer.documents)
