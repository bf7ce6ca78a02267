"""Byte-level BPE trained on the training side, or a user's local tokenizer.json; never a hub."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterable
from pathlib import Path

from pipeline.errors import PipelineError


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def train_bpe(texts: Iterable[str], vocab_size: int, eos_token: str | None, out_path: Path) -> None:
    """Train a GPT-2-style byte-level BPE (every byte representable) and save tokenizer.json."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[eos_token] if eos_token else [],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tok.save(str(out_path))


def install_user_tokenizer(path: Path, eos_token: str | None, out_path: Path) -> None:
    """Validate a local tokenizer.json (loads, knows the EOS token) and copy it to `out_path`."""
    check_user_tokenizer(path, eos_token)
    shutil.copyfile(path, out_path)


def check_user_tokenizer(path: Path, eos_token: str | None) -> None:
    from tokenizers import Tokenizer

    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"tokenizer.path does not exist or is not a file: {path}")
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as err:  # tokenizers raises a bare Exception on malformed JSON
        raise PipelineError(
            f"tokenizer.path is not a valid tokenizer.json: {path} ({err})"
        ) from err
    if eos_token is not None and tok.token_to_id(eos_token) is None:
        raise PipelineError(
            f"tokenizer.eos_token {eos_token!r} is not in the vocabulary of {path}; "
            "set tokenizer.eos_token to one of its special tokens or to null"
        )


def token_dtype_for(vocab_size: int) -> str:
    """Same rule as datatrove's DocumentTokenizer: 2-byte tokens while ids fit in uint16."""
    return "uint32" if vocab_size > 2**16 else "uint16"
