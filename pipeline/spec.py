"""`BudgetSpec`: everything that decides the bytes of a budget, hashed into its directory name."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from formats.hashing import ID_HEX, sha256_hex

# Bump when the builder's output changes for the same spec, so old budgets are not trusted.
PIPELINE_VERSION = 1


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SourceSpec(_Frozen):
    """Where documents come from and how much of the source to read."""

    kind: Literal["stdlib", "jsonl", "parquet", "files"] = Field(
        default="stdlib",
        description="stdlib: this interpreter's standard library .py files; jsonl/parquet: records "
        "with a text field; files: a directory of text/source files matched by `glob`.",
    )
    path: Path | None = Field(
        default=None, description="File or directory for jsonl/parquet/files (unused for stdlib)."
    )
    glob: str | None = Field(
        default=None,
        description="Glob relative to `path` (files: default '**/*.py'; jsonl/parquet: default all "
        "files with that extension).",
    )
    text_key: str = Field(default="text", min_length=1, description="Text field of jsonl/parquet.")
    include_site_packages: bool = Field(
        default=False, description="stdlib: also read the installed packages (purelib)."
    )
    max_files: int | None = Field(
        default=None,
        ge=1,
        description="Cap on source files (stdlib/files) or records (jsonl/parquet) read; files are "
        "picked in a seed-determined order, so a cap gives a spread sample, not one package.",
    )
    max_bytes: int | None = Field(
        default=None, ge=1, description="Cap on total bytes of text read (same selection order)."
    )
    max_file_bytes: int = Field(
        default=1_000_000, ge=1, description="Files/documents larger than this are skipped."
    )
    on_bad_record: Literal["skip", "fail"] | None = Field(
        default=None,
        description="A record that cannot be read (not UTF-8, not JSON, no text field): 'fail' "
        "stops the build naming file and line; 'skip' counts it (reason, file, first lines) in "
        "the manifest. Default: fail for jsonl/parquet, skip for stdlib/files.",
    )

    @property
    def bad_record_policy(self) -> Literal["skip", "fail"]:
        if self.on_bad_record is not None:
            return self.on_bad_record
        return "fail" if self.kind in ("jsonl", "parquet") else "skip"

    @model_validator(mode="after")
    def _path_matches_kind(self) -> SourceSpec:
        if self.kind != "stdlib" and self.path is None:
            raise ValueError(f"source.path is required for kind={self.kind!r}")
        if self.kind == "stdlib" and self.path is not None:
            raise ValueError("source.path must be empty for kind='stdlib'")
        return self


class TokenizerSpec(_Frozen):
    """Train a byte-level BPE on the training side, or use a local tokenizer.json (never a hub)."""

    path: Path | None = Field(
        default=None, description="Local tokenizer.json to use instead of training one."
    )
    vocab_size: int = Field(
        default=2048,
        ge=260,
        le=1_000_000,
        description="Trained vocab (256 byte tokens + merges + specials); small for CPU models.",
    )
    eos_token: str | None = Field(
        default="<|endoftext|>", description="Appended after every document; None for no EOS."
    )
    train_max_bytes: int = Field(
        default=8_000_000,
        ge=1,
        description="Characters of training-side text the BPE trainer sees (bounds its cost).",
    )


class DedupSpec(_Frozen):
    """Exact dedup (sha256 of the text) and MinHash near-dedup (word n-gram shingles, LSH bands)."""

    exact: bool = True
    near: bool = True
    threshold: float = Field(
        default=0.8,
        gt=0.0,
        le=1.0,
        description="Estimated Jaccard at or above which a doc is dropped.",
    )
    ngram: int = Field(default=5, ge=1, le=32, description="Words per shingle.")
    num_perm: int = Field(default=64, ge=4, le=1024, description="MinHash permutations.")
    bands: int = Field(default=16, ge=1, le=1024, description="LSH bands (num_perm % bands == 0).")

    @model_validator(mode="after")
    def _bands_divide(self) -> DedupSpec:
        if self.num_perm % self.bands:
            raise ValueError(f"dedup.bands={self.bands} must divide dedup.num_perm={self.num_perm}")
        return self


class EvalSetSpec(_Frozen):
    """HellaSwag-style multiple choice built from held-out documents."""

    n_items: int = Field(
        default=200,
        ge=1,
        description="Items wanted; held-out documents are reused at new offsets when fewer.",
    )
    n_distractors: int = Field(default=3, ge=1, le=31, description="Wrong continuations per item.")
    context_tokens: int = Field(default=64, ge=1, description="Tokens of context.")
    continuation_tokens: int = Field(default=16, ge=1, description="Tokens per continuation.")


class BudgetSpec(_Frozen):
    """A request for nested unique-token budgets of one corpus plus a shared held-out split."""

    source: SourceSpec = Field(default_factory=SourceSpec)
    sizes: tuple[int, ...] = Field(
        min_length=1, description="Unique training tokens per budget (sorted, unique, > 0)."
    )
    heldout_fraction: float = Field(
        default=0.05, gt=0.0, lt=0.5, description="Share of documents held out (by content hash)."
    )
    tokenizer: TokenizerSpec = Field(default_factory=TokenizerSpec)
    dedup: DedupSpec = Field(default_factory=DedupSpec)
    eval_set: EvalSetSpec = Field(default_factory=EvalSetSpec)
    seed: int = Field(default=0, ge=0, description="Decides file sampling, split and budget order.")

    @field_validator("sizes")
    @classmethod
    def _sizes_sorted_unique(cls, sizes: tuple[int, ...]) -> tuple[int, ...]:
        if any(s <= 0 for s in sizes):
            raise ValueError(f"sizes must be positive, got {list(sizes)}")
        if len(set(sizes)) != len(sizes):
            raise ValueError(f"sizes must be unique, got {list(sizes)}")
        return tuple(sorted(sizes))

    @property
    def spec_hash(self) -> str:
        """First 16 hex of sha256 over the canonical JSON (+ a user tokenizer's bytes)."""
        # on_bad_record is not hashed: a build either fails or gives the bytes 'skip' gives.
        spec = self.model_dump(mode="json", exclude={"source": {"on_bad_record"}})
        payload = {"v": PIPELINE_VERSION, "spec": spec}
        tok_path = self.tokenizer.path
        if tok_path is not None and Path(tok_path).is_file():
            # A tokenizer file edited in place must not reuse budgets built with the old one.
            payload["tokenizer_sha256"] = hashlib.sha256(Path(tok_path).read_bytes()).hexdigest()
        return sha256_hex(payload)[:ID_HEX]
