"""The data_prep section: raw documents to packed shards (task=prepare)."""

from __future__ import annotations

from dataclasses import dataclass, field

from llm_launch.launcher.config.checks import Checks, Section
from llm_launch.launcher.config.choices import choices
from omegaconf import MISSING

DataSourceFormat = choices("DataSourceFormat", "jsonl", "parquet", "text", "html", "pdf", "docx")


DedupGranularity = choices("DedupGranularity", "document", "paragraph")


@dataclass
class DataSourceConfig(Section):
    """One input of data preparation: a file or a folder of files of one format."""

    name: str = MISSING
    """Short name of the source, used in the manifest and in mixing (e.g. domain, general)."""
    path: str = MISSING
    """A file, or a folder read recursively for files of the format (sorted by path, for determinism)."""
    format: DataSourceFormat = DataSourceFormat.jsonl
    """jsonl, parquet, text (one document per file), html, pdf or docx."""
    text_field: str = "text"
    """Field (JSONL key or Parquet column) holding the document text."""
    id_field: str | None = None
    """Field holding a document id for the manifest's examples; None uses file:line."""
    weight: float = 1.0
    """Share of the mixed corpus (normalised over all sources), measured in characters of kept text.
    The source that runs out first is used whole; the others are subsampled to their share."""

    def own_problems(self, checks: Checks) -> None:
        if not self.name:
            checks.error("name", "must be a non-empty name, e.g. web")
        if not self.weight > 0:
            checks.error("weight", f"must be positive (a share of the mix), got {self.weight}")
        if self.format in (DataSourceFormat.jsonl, DataSourceFormat.parquet) and not self.text_field:
            checks.error("text_field", "must name the field holding the text, e.g. text")


@dataclass
class DataFilterConfig(Section):
    """Quality filters; each one that drops a document is counted in the manifest under its name."""

    min_words: int = 5
    """Drop documents with fewer words (whitespace-separated tokens)."""
    max_words: int | None = None
    """Drop documents with more words; None for no upper limit."""
    min_mean_word_length: float = 2.0
    """Drop documents whose mean word length (characters) is below this."""
    max_mean_word_length: float = 12.0
    """Drop documents whose mean word length is above this (tables of hashes, minified code)."""
    min_alpha_word_fraction: float = 0.6
    """Drop documents where fewer than this share of words contain an alphabetic character; 0 disables."""
    max_duplicate_line_fraction: float = 0.3
    """Drop documents where more than this share of non-empty lines repeat an earlier line; 1 disables."""
    ngram_size: int = 3
    """n of the repeated n-gram filter (word n-grams)."""
    max_duplicate_ngram_fraction: float = 0.3
    """Drop documents where n-grams occurring more than once cover more than this share of the
    characters of all n-grams; 1 disables."""
    languages: list[str] = field(default_factory=list)
    """Keep only these languages (ISO 639-1 codes as langdetect names them, e.g. en); empty disables.
    Needs the langdetect package."""
    min_language_score: float = 0.8
    """With languages: the detected language's probability must reach this."""
    url_field: str | None = None
    """Record field holding the document's URL for the URL filter; None disables it."""
    blocked_domains: list[str] = field(default_factory=list)
    """Drop documents whose URL host is one of these domains or a subdomain of one."""
    required_metadata: dict[str, str] = field(default_factory=dict)
    """Keep only records whose field has exactly this value (e.g. {license: cc-by}); JSONL/Parquet only."""
    blocked_metadata: dict[str, str] = field(default_factory=dict)
    """Drop records whose field has exactly this value (e.g. {split: test}); JSONL/Parquet only."""

    def own_problems(self, checks: Checks) -> None:
        checks.fraction(min_alpha_word_fraction=self.min_alpha_word_fraction,
                        max_duplicate_line_fraction=self.max_duplicate_line_fraction,
                        max_duplicate_ngram_fraction=self.max_duplicate_ngram_fraction,
                        min_language_score=self.min_language_score)
        checks.at_least(0, min_words=self.min_words)
        checks.at_least(1, ngram_size=self.ngram_size)
        if self.max_words is not None and self.max_words < self.min_words:
            checks.error("max_words", f"{self.max_words} is below min_words {self.min_words}; raise it or set it "
                         "to null")
        if not 0 <= self.min_mean_word_length <= self.max_mean_word_length:
            checks.error("min_mean_word_length", f"need 0 <= min ({self.min_mean_word_length}) <= "
                         f"max_mean_word_length ({self.max_mean_word_length})")
        if self.blocked_domains and not self.url_field:
            checks.error("url_field", f"blocked_domains needs the record field holding the URL; set "
                         f"{checks.key('url_field')}=url")


@dataclass
class DedupConfig(Section):
    """Exact and near-duplicate removal; the first document of each cluster (in reading order) is kept."""

    exact: bool = True
    """Remove exact duplicates (SHA-256 of the normalised text)."""
    near: bool = True
    """Remove near duplicates with MinHash LSH (datasketch)."""
    granularity: DedupGranularity = DedupGranularity.document
    """document (drop whole documents) or paragraph (drop repeated paragraphs, split on blank lines)."""
    threshold: float = 0.8
    """Estimated Jaccard similarity of word-shingle sets at or above which two units are duplicates."""
    num_perm: int = 128
    """MinHash permutations: more is more precise and slower."""
    shingle_size: int = 5
    """Words per shingle."""

    def own_problems(self, checks: Checks) -> None:
        if not 0 < self.threshold <= 1:
            checks.error("threshold", f"must be in (0, 1], got {self.threshold}; e.g. 0.8")
        checks.at_least(16, num_perm=self.num_perm)
        checks.at_least(1, shingle_size=self.shingle_size)


@dataclass
class DataSplitConfig(Section):
    """Train/validation split, by whole documents after mixing."""

    valid_fraction: float = 0.01
    """Share of documents held out for validation; 0 writes no validation split."""

    def own_problems(self, checks: Checks) -> None:
        checks.fraction(open_high=True, valid_fraction=self.valid_fraction)


@dataclass
class DataOutputConfig(Section):
    """Where and how the packed shards are written."""

    dir: str | None = None
    """Output folder (train/, valid/ and manifest.json); None means <output_dir>/data."""
    shard_chars: int = 200_000_000
    """Characters of text per shard (about 4 characters per token: 200 M characters make a shard of
    roughly 50 M tokens). Each shard is tokenized, packed and written on its own (its tail that does not
    fill a row is counted as remainder), so that a rerun skips finished shards and ranks build shards
    in parallel."""
    work_dir: str | None = None
    """Folder for the intermediates (filtered documents, dedup signatures, shard buckets, task reports and
    DataTrove's completion markers), on any file system every worker reaches: a local or shared folder or an
    s3:// prefix. None means <dir>/.work. A run's intermediates sit in <work_dir>/<fingerprint>/."""
    keep_work: bool = False
    """Keep the intermediate work folder (selected documents per shard) after a successful run."""
    overwrite: bool = False
    """Replace a finished dataset in dir that was prepared from other inputs or settings (its manifest's
    fingerprint differs); false refuses, so nothing is overwritten by accident."""

    def own_problems(self, checks: Checks) -> None:
        checks.at_least(1, shard_chars=self.shard_chars)


@dataclass
class DataPrepConfig(Section):
    """Data preparation (task=prepare): raw documents to packed token shards and a manifest."""

    sources: list[DataSourceConfig] = field(default_factory=list)
    """Inputs and their mixing weights."""
    filters: DataFilterConfig = field(default_factory=DataFilterConfig)
    """Quality filters."""
    dedup: DedupConfig = field(default_factory=DedupConfig)
    """Deduplication."""
    split: DataSplitConfig = field(default_factory=DataSplitConfig)
    """Train/validation split."""
    output: DataOutputConfig = field(default_factory=DataOutputConfig)
    """Output folder and shard sizes."""
    seq_len: int | None = None
    """Tokens per packed row; None uses training.seq_len (so the training job reads the rows as they are)."""
    tokenizer_path: str | None = None
    """Hugging Face tokenizer folder; None uses training.data.tokenizer_path."""
    seed: int | None = None
    """Seed of mixing, shuffling and the split; None uses training.seed."""
    workers: int = 0
    """Tasks each host runs at a time (DataTrove LocalPipelineExecutor workers); 0 uses every core."""
    task_bytes: int = 256_000_000
    """Input bytes per task of the per-file stages: tasks = input size / task_bytes, at least 1 and at most one
    per input file (a file is never split, so split a huge file to spread it). A task's memory follows its
    share of the input, not the corpus size."""
    shuffle: bool = True
    """Shuffle documents (seeded) after mixing, so sources interleave; false keeps reading order."""

    def own_problems(self, checks: Checks) -> None:
        checks.at_least(0, workers=self.workers)
        checks.at_least(1, task_bytes=self.task_bytes)
        checks.at_least(2, seq_len=self.seq_len)
        names = [source.name for source in self.sources]
        for index, name in enumerate(names):
            if name and names.count(name) > 1:
                checks.error(f"sources[{index}].name", f"'{name}' names two sources; give each its own name")
