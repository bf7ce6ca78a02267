"""Tiny budgets for trainer tests: token files written with numpy, no pipeline/ needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training_core import DataConfig, ObjectiveConfig, RunConfig, model_preset

VOCAB = 64  # tokenizer vocab; the model gets VOCAB + 1 rows (mask id = VOCAB)
SEQ_LEN = 32


def markov_tokens(n: int, seed: int, vocab: int = VOCAB, p_rule: float = 0.9) -> np.ndarray:
    """A learnable stream: next = (3 * prev + 1) % vocab with prob ``p_rule``, else uniform."""
    rng = np.random.default_rng(seed)
    out = np.empty(n, dtype=np.uint16)
    out[0] = 0
    follow = rng.random(n) < p_rule
    noise = rng.integers(0, vocab, n)
    for i in range(1, n):
        out[i] = (3 * int(out[i - 1]) + 1) % vocab if follow[i] else noise[i]
    return out


def write_tokens(path: Path, tokens: np.ndarray) -> str:
    tokens.astype("<u2").tofile(path)
    return str(path)


def write_mc(path: Path, n_items: int = 6, seed: int = 3) -> str:
    """Items whose true continuation follows the Markov rule and whose distractors do not."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_items):
        ctx = [int(t) for t in markov_tokens(8, seed + i, p_rule=1.0)]
        nxt = (3 * ctx[-1] + 1) % VOCAB
        true = [nxt, (3 * nxt + 1) % VOCAB]
        wrong = [[int(rng.integers(VOCAB)), int(rng.integers(VOCAB))] for _ in range(2)]
        label = i % 3
        choices = wrong[:label] + [true] + wrong[label:]
        rows.append({"item_id": i, "context": ctx, "choices": choices, "label": label})
    frame = pd.DataFrame(rows)
    frame["context_text"] = ""
    frame["choices_text"] = [["", "", ""]] * len(frame)
    frame.to_parquet(path)
    return str(path)


def tiny_data(
    tmp_path: Path, n_train: int = 4096, n_val: int = 1024, mc: bool = True
) -> DataConfig:
    """Train tokens split over two files (windows straddle the boundary), one val file."""
    train = markov_tokens(n_train, seed=1)
    half = n_train // 2 + 5
    files = (
        write_tokens(tmp_path / "train_0.ds", train[:half]),
        write_tokens(tmp_path / "train_1.ds", train[half:]),
    )
    val = write_tokens(tmp_path / "val.ds", markov_tokens(n_val, seed=2))
    return DataConfig(
        train_files=files,
        val_files=(val,),
        eval_mc_path=write_mc(tmp_path / "eval_mc.parquet") if mc else None,
        token_dtype="uint16",
        vocab_size=VOCAB,
        unique_tokens=n_train,
        budget_id="tiny",
    )


def tiny_config(data: DataConfig, kind: str = "ar", **overrides: Any) -> RunConfig:
    """A run of a few seconds on one CPU thread; ``overrides`` are top-level or dotted dicts."""
    base: dict[str, Any] = {
        "model": model_preset("tiny", vocab_size=VOCAB + 1, seq_len=SEQ_LEN).model_dump(),
        "objective": ObjectiveConfig(kind=kind).model_dump(),
        "optim": {"lr": 3e-3, "warmup": 2, "batch_size": 16, "weight_decay": 0.0},
        "eval": {"every_epochs": 1.0, "val_max_tokens": 512, "elbo_samples": 2, "mc_samples": 2},
        "data": data.model_dump(),
        "epochs": 2.0,
        "seed": 0,
        "device": "cpu",
        "threads": 1,
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return RunConfig.from_dict(base)
