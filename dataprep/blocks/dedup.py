"""Deduplication around DataTrove's sharded stages (exact: signature, find, filter; MinHash: signature,
buckets, cluster, filter; https://github.com/huggingface/datatrove/tree/main/src/datatrove/pipeline/dedup).

What is ours:
- RankFile: reads back exactly the intermediate file a task of the same rank wrote, so DataTrove's
  per-rank document indices (signature doc_idx, .remove files) line up whatever files other tasks left.
- Paragraph granularity: SplitParagraphs makes each paragraph a document before the dedup stages and
  JoinParagraphs rebuilds each document from its surviving paragraphs after them.
- FullSignatures + VerifyPairs: DataTrove's LSH marks a pair as duplicate when one band of hashes matches;
  we keep every band's hashes per document and keep a candidate pair only when the estimated Jaccard
  similarity (share of equal hashes over all bands) reaches dedup.threshold, as the in-memory pipeline
  did (dataprep/dedup.py), so LSH false positives are not removed.
- MarkRemoved/DropRemoved: DataTrove's exact and MinHash filters run one after the other over the same
  file in one pass, and what each removes is counted per source, with examples (reports.py).
- PassingExactSignatures: exact signatures and MinHash signatures in the same pass as the filters.
- RankShare: runs a step's ranks spread over the tasks of another stage, so stages that need no barrier between
  them (exact find, MinHash buckets and their verification) run as one stage, and a small corpus runs its LSH
  bands in a few tasks (each task costs DataTrove's logging and statistics set-up, about 10 to 20 ms here).
- Shingle hashing (FullSignatures.get_shingles): every word of the text is hashed at once with numpy
  (word_hashes.py) and a shingle's hash is a mix of its words' hashes, instead of DataTrove's one Python call per
  shingle that joins its words and hashes the string with SHA-1 (the filter stage's largest cost); the same
  words and shingles, other hash values. The signature itself is DataTrove's, the same numbers for the same
  shingles, with a cheaper modulo (FullSignatures.get_signature).
"""

from __future__ import annotations

import struct
from collections import deque

import numpy as np
from datatrove.data import Document, DocumentsPipeline
from datatrove.io import get_datafolder
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.dedup.exact_dedup import ExactDedupSignature
from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature, _mersenne_prime
from datatrove.pipeline.readers.jsonl import JsonlReader
from datatrove.utils.binaryio import read_tuples_from_file
from datatrove.utils.text import TextNormConfig, simplify_text
from datatrove.utils.typeshelper import StatHints
from llm_launch.dataprep.blocks.filters import WhitespaceWords
from llm_launch.dataprep.blocks.read import MIX_KEY
from llm_launch.dataprep.blocks.reports import ReportingStep, TaskReport
from llm_launch.dataprep.normalize import paragraphs
from llm_launch.dataprep.word_hashes import mix64, word_hashes

DEDUP_STEP = "dedup"
FULL_SIGS = "full"


_MIX = np.uint64(0x9E3779B97F4A7C15)
_PRIME = np.uint64(_mersenne_prime)
_SHIFT = np.uint64(61)
PLAIN_WORDS = TextNormConfig(lowercase=True, norm_whitespace=True, remove_punctuation=False,
                             norm_unicode_diacritics=False, norm_numbers=False)
"""How shingles see text: lower-cased whitespace words (DataTrove's default also drops punctuation and digits)."""


def shingle_hashes(words: np.ndarray, n: int) -> np.ndarray:
    """uint64 hash of each run of n consecutive word hashes: a polynomial of the n hashes (mod 2^64) finished with
    splitmix64's mixer (https://prng.di.unimi.it/splitmix64.c), so every bit depends on every word."""
    count = len(words) - n + 1
    if count <= 0:
        return np.empty((0, 1), np.uint64)
    x = words[:count].copy()  # arrays of unsigned integers wrap around silently (numpy warns only for scalars)
    for k in range(1, n):
        x *= _MIX
        x += words[k:k + count]
    return mix64(x).reshape((-1, 1))


class RankShare(PipelineStep):
    """Runs `inner`, a step that reads no documents, as the ranks 0..count-1 of a stage of `count` tasks, spread
    over the tasks of the stage it is in: task r of world_size runs the r-th contiguous run of those ranks (one
    rank or none when count <= world_size, several in a row when count > world_size). The steps before it in the
    same task run first (they make no documents)."""

    def __init__(self, inner: PipelineStep, count: int):
        super().__init__()
        self.inner, self.count = inner, count
        self.name, self.type, self.stats = inner.name, inner.type, inner.stats

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for _ in data or ():
            pass
        per, extra = divmod(self.count, world_size)
        first = rank * per + min(rank, extra)
        for inner_rank in range(first, first + per + (rank < extra)):
            result = self.inner.run(None, inner_rank, self.count)
            if result is not None:
                yield from result


class RankFile(JsonlReader):
    """The documents of <folder>/<rank>.jsonl (written by JsonlWriter in task `rank`), or none."""

    name = "read back"

    def __init__(self, folder: str):
        super().__init__(folder, compression=None, add_file_path=False)

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        name = f"{rank:05d}.jsonl"
        if self.data_folder.exists(name):
            yield from self.read_file(name)


class SplitParagraphs(PipelineStep):
    """One document per paragraph (blocks between blank lines), ids <doc> (paragraph N)."""

    name = "split paragraphs"
    type = "✂️ - FORMAT"

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for doc in data:
            pieces = paragraphs(doc.text)
            for number, piece in enumerate(pieces, 1):
                yield Document(text=piece, id=f"{doc.id} (paragraph {number})",
                               metadata={"source": doc.metadata["source"], "parent": doc.id,
                                         MIX_KEY: doc.metadata[MIX_KEY]})


class JoinParagraphs(PipelineStep):
    """Rebuilds documents from their surviving paragraphs (consecutive, in order), joined by a blank line."""

    name = "join paragraphs"
    type = "✂️ - FORMAT"

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        current: Document | None = None
        for doc in data:
            parent = doc.metadata["parent"]
            if current is not None and current.id == parent:
                current.text += "\n\n" + doc.text
                continue
            if current is not None:
                yield current
            current = Document(text=doc.text, id=parent,
                               metadata={"source": doc.metadata["source"], MIX_KEY: doc.metadata[MIX_KEY]})
        if current is not None:
            yield current


REMOVED = "removed_as"
"""Metadata key of a document a dedup filter removed, while it still travels (MarkRemoved)."""


class MarkRemoved(PipelineStep):
    """Runs a DataTrove dedup filter on every document, marking (not dropping) the ones it removes.

    DataTrove's dedup filters find a task's removals by the document's index in the stream, so two of them can
    only run one after the other on the same file if the first keeps every document in the stream: the
    documents it drops are passed on with metadata[removed_as] = kind; DropRemoved drops and counts them."""

    type = "🫂 - DEDUP"

    def __init__(self, inner: PipelineStep, kind: str):
        self.name = f"{inner.name} (marking)"  # before PipelineStep.__init__, which labels the statistics with it
        super().__init__()
        self.inner, self.kind = inner, kind

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        pending: deque[Document] = deque()

        def tagged(docs: DocumentsPipeline) -> DocumentsPipeline:
            for doc in docs:
                pending.append(doc)
                yield doc

        def removed(until: Document | None) -> DocumentsPipeline:
            while pending and pending[0] is not until:
                doc = pending.popleft()
                doc.metadata.setdefault(REMOVED, self.kind)
                self.stat_update("removed")
                yield doc

        for doc in self.inner.run(tagged(data), rank, world_size):
            yield from removed(doc)
            yield pending.popleft()
        yield from removed(None)


class DropRemoved(ReportingStep):
    """Drops the documents MarkRemoved marked, counting each under its kind, per source, with examples."""

    name = "drop duplicates"
    type = "🫂 - DEDUP"

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        report = TaskReport()
        for doc in data:
            kind = doc.metadata.pop(REMOVED, None)
            if kind is None:
                yield doc
                continue
            report.drop(doc.metadata["source"], "duplicates", kind, doc.id)
            self.stat_update(kind)
        report.save(self.work, DEDUP_STEP, rank)


class PassingExactSignatures(ExactDedupSignature):
    """DataTrove's exact-dedup signature step (same hashes, same files) that passes the documents on, so the
    MinHash signatures are computed in the same pass."""

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        signatures = []
        for doc_idx, doc in enumerate(data):
            self.stat_update(StatHints.total)
            signatures.extend(self.get_hashes(doc, doc_idx))
            yield doc
        self.save_hashes(rank, signatures)


class FullSignatures(MinhashDedupSignature):
    """DataTrove's MinHash signature step that also writes every band's hashes of each document, in document
    order, to <output>/full/<rank>.sig (zeros for a document too short to have shingles)."""

    def __init__(self, output_folder: str, config: MinhashConfig, language):
        super().__init__(output_folder, config=config, language=language)
        self._last: np.ndarray | None = None
        """The last document's signature (every band's hashes)."""
        assert isinstance(language, WhitespaceWords), "shingles are word_hashes' whitespace words"
        self._plain_words = config.norm_config == PLAIN_WORDS
        """Words are text.lower().split(): what simplify_text (lower case, runs of whitespace to one space, strip)
        then a whitespace split give, without building the simplified text (re's \\s and str.split both split
        at the characters str.isspace accepts)."""

    def get_shingles(self, text: str) -> np.ndarray:
        """The hashes of the text's word n-grams (same words and n-grams as DataTrove's; see the module docstring)."""
        text = text.lower() if self._plain_words else simplify_text(text, self.config.norm_config)
        return shingle_hashes(word_hashes(text), self.config.n_grams)

    def get_signature(self, shingles: np.ndarray) -> list[list[int]]:
        """DataTrove's signature (min over shingles of (a * shingle + b) mod 2^61 - 1 per hash), the same numbers,
        with the modulo of the Mersenne prime done by shifts and masks: y = (x & p) + (x >> 61) is below 2p, and
        min(y, y - p) in unsigned arithmetic is y - p where y >= p and y where not (y - p wraps around)."""
        a, b = self.parameters
        x = shingles * a  # arrays of unsigned integers wrap around silently (numpy warns only for scalars)
        x += b
        y = x & _PRIME
        x >>= _SHIFT
        y += x
        np.subtract(y, _PRIME, out=x)
        np.minimum(y, x, out=y)
        if self.config.hash_config.precision == 32:
            y &= np.uint64(self.config.hash_config.max)
        self._last = y.min(axis=0).astype(self.config.hash_config.np_dtype, copy=False)
        return self._last.reshape(self.config.num_buckets, -1).tolist()

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1):
        dtype = self.config.hash_config.np_dtype
        with self.output_folder.open(f"{FULL_SIGS}/{rank:05d}.sig", "wb") as full:
            def recorded(docs: DocumentsPipeline) -> DocumentsPipeline:
                for doc in docs:
                    self._last = None
                    yield doc
                    full.write((np.zeros(self.num_hashes, dtype) if self._last is None else self._last).tobytes())

            super().run(recorded(data), rank, world_size)


class VerifyPairs(PipelineStep):
    """Keeps the candidate pairs of one bucket's .dups files whose estimated Jaccard similarity over all bands
    reaches the threshold; writes them, same names, to output_folder for MinhashDedupCluster."""

    name = "verify MinHash pairs"
    type = "🫂 - DEDUP"

    def __init__(self, candidates: str, signatures: str, output_folder: str, config: MinhashConfig, threshold: float):
        super().__init__()
        self.candidates, self.signatures = get_datafolder(candidates), get_datafolder(signatures)
        self.output_folder, self.config, self.threshold = get_datafolder(output_folder), config, threshold

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        hashes = self.config.num_buckets * self.config.hashes_per_bucket
        dtype = np.dtype(self.config.hash_config.np_dtype)
        row = hashes * dtype.itemsize
        handles = {}

        def signature(file: int, doc: int) -> np.ndarray:
            if file not in handles:
                handles[file] = self.signatures.open(f"{FULL_SIGS}/{file:05d}.sig", "rb")
            handle = handles[file]
            handle.seek(doc * row)
            return np.frombuffer(handle.read(row), dtype=dtype)

        try:
            for name in self.candidates.list_files(glob_pattern=f"{rank:05d}_*.dups"):
                with self.candidates.open(name, "rb") as pairs, self.output_folder.open(name, "wb") as out:
                    for f1, d1, f2, d2 in read_tuples_from_file(pairs, "4I", lines_to_buffer=1000):
                        self.stat_update("candidates")
                        if float(np.mean(signature(f1, d1) == signature(f2, d2))) >= self.threshold:
                            out.write(struct.pack("<4I", f1, d1, f2, d2))
                            self.stat_update("verified")
        finally:
            for handle in handles.values():
                handle.close()
        return
        yield  # a generator step that yields nothing
