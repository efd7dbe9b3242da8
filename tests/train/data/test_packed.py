"""The packed-shard format: nothing lost, deterministic, readable row by row."""

import hashlib
import json

import numpy as np
import pytest
from llm_launch.train.data.packed import INDEX_FILE, PackedDataset, token_dtype, write_packed


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
    from llm_launch.train.data.packed import RowPacker, pack_documents

    docs = _docs(5, 120, 2048)
    packer = RowPacker(16, 1)
    rows = np.stack(list(packer.rows(docs)))
    flat, remainder, documents = pack_documents(docs, seq_len=16, eos_id=1, dtype=np.dtype(np.uint16))
    assert flat.reshape(-1, 16).tolist() == rows.tolist()
    assert (remainder, documents) == (packer.remainder, packer.documents)


def _dataset(tmp_path, rows_per_shard=100):
    write_packed(tmp_path / "ds", _docs(2, 120, 2048), seq_len=8, eos_id=1, vocab_size=2048,
                 rows_per_shard=rows_per_shard)
    return tmp_path / "ds"


def _edit_index(path, change):
    index = json.loads((path / INDEX_FILE).read_text())
    change(index)
    (path / INDEX_FILE).write_text(json.dumps(index))


def test_index_records_each_shards_size_and_sampled_hash(tmp_path):
    from llm_launch.train.file_check import sampled_sha256

    path = _dataset(tmp_path, rows_per_shard=50)
    for shard in json.loads((path / INDEX_FILE).read_text())["shards"]:
        assert shard["bytes"] == (path / shard["file"]).stat().st_size == shard["rows"] * 8 * 2
        assert shard["sampled_sha256"] == sampled_sha256(path / shard["file"])


def test_truncated_shard_is_named_at_open(tmp_path):
    from llm_launch.train.data.packed import PackedDataError

    path = _dataset(tmp_path)
    shard = path / "shard_00000.bin"
    shard.write_bytes(shard.read_bytes()[:-5])
    with pytest.raises(PackedDataError, match=r"shard_00000\.bin: \d+ bytes, but index\.json lists .* truncated"):
        PackedDataset.open(path)


@pytest.mark.parametrize(("delta", "word"), [(1, "truncated"), (-1, "longer than the index says")])
def test_index_claiming_more_or_fewer_rows_than_the_file_holds_is_refused(tmp_path, delta, word):
    from llm_launch.train.data.packed import PackedDataError

    path = _dataset(tmp_path)

    def change(index):
        index["shards"][0]["rows"] += delta
        index["num_rows"] += delta
    _edit_index(path, change)
    with pytest.raises(PackedDataError, match=f"shard_00000.bin: .*{word}"):
        PackedDataset.open(path)


def test_index_row_total_must_match_its_shards(tmp_path):
    from llm_launch.train.data.packed import PackedDataError

    path = _dataset(tmp_path)
    _edit_index(path, lambda index: index.__setitem__("num_rows", index["num_rows"] + 3))
    with pytest.raises(PackedDataError, match="num_rows is .* but its shards list"):
        PackedDataset.open(path)


def test_a_rewritten_shard_fails_its_checksum_and_old_indexes_still_open(tmp_path):
    from llm_launch.train.data.packed import PackedDataError

    path = _dataset(tmp_path)
    shard = path / "shard_00000.bin"
    data = bytearray(shard.read_bytes())
    data[0] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(PackedDataError, match="shard_00000.bin: its content differs from the checksum"):
        PackedDataset.open(path)
    _edit_index(path, lambda index: [s.pop("sampled_sha256") for s in index["shards"]])
    assert len(PackedDataset.open(path)) > 0  # written before checksums: size checked only


def test_missing_shard_and_unreadable_index_are_named(tmp_path):
    from llm_launch.train.data.packed import PackedDataError

    path = _dataset(tmp_path)
    (path / "shard_00000.bin").unlink()
    with pytest.raises(PackedDataError, match="shard_00000.bin: missing"):
        PackedDataset.open(path)
    (path / INDEX_FILE).write_text('{"format": ')
    with pytest.raises(PackedDataError, match="index.json: not valid JSON"):
        PackedDataset.open(path)


def test_one_long_document_packs_like_many_short_ones(tmp_path):
    from llm_launch.train.data.packed import RowPacker

    long_doc = list(range(5, 1005))
    packer = RowPacker(seq_len=16, eos_id=1)
    rows = np.stack(list(packer.rows([[7, 8], long_doc, [9]])))
    stream = [7, 8, 1, *long_doc, 1, 9, 1]
    assert rows.ravel().tolist() == stream[: len(rows) * 16]
    assert packer.remainder == len(stream) % 16 and packer.documents == 3


def test_rows_split_across_shards_at_rows_per_shard_whole_rows_too(tmp_path):
    """write_packed takes rows in blocks (one per document or piece); a block is split where a shard fills."""
    import numpy as np
    from llm_launch.train.data.packed import PackedDataset, write_packed

    rng = np.random.default_rng(1)
    docs = [rng.integers(2, 500, size=n).tolist() for n in (100, 7, 60)]
    index = write_packed(tmp_path / "a", docs, seq_len=16, eos_id=1, vocab_size=2048, rows_per_shard=3)
    stream = [t for d in docs for t in (*d, 1)]
    rows = len(stream) // 16
    assert [s["rows"] for s in index["shards"]] == [3] * (rows // 3) + ([rows % 3] if rows % 3 else [])
    packed = PackedDataset.open(tmp_path / "a")
    assert np.array_equal(np.concatenate([packed.row(i) for i in range(rows)]), stream[:rows * 16])
    whole = [rng.integers(2, 500, size=16).tolist() for _ in range(5)]
    index = write_packed(tmp_path / "b", whole, seq_len=16, eos_id=1, vocab_size=2048, rows_per_shard=2,
                         whole_rows=True)
    assert [s["rows"] for s in index["shards"]] == [2, 2, 1] and index["documents"] == 5
    packed = PackedDataset.open(tmp_path / "b")
    assert [packed.row(i).tolist() for i in range(5)] == whole
