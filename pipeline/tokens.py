"""Reading token files back: flat little-endian arrays written by datatrove's DocumentTokenizer."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def read_tokens(files: Sequence[str | Path], dtype: str | np.dtype) -> np.ndarray:
    """Memory-map `files` and concatenate them in list order.

    One file returns the read-only memmap itself (no copy); several are concatenated (a copy).
    """
    dt = np.dtype(dtype).newbyteorder("<")
    if not files:
        return np.zeros(0, dtype=dt)
    maps = [
        np.memmap(f, dtype=dt, mode="r") if Path(f).stat().st_size else np.zeros(0, dt)
        for f in files
    ]
    return maps[0] if len(maps) == 1 else np.concatenate(maps)


def read_doc_ends(token_file: str | Path) -> np.ndarray:
    """Cumulative token offsets of document ends (the `.index` file next to a `.ds` file)."""
    index = Path(f"{token_file}.index")
    if not index.is_file() or index.stat().st_size == 0:
        return np.zeros(0, dtype=np.uint64)
    return np.fromfile(index, dtype="<u8")
