"""Token windows from a budget's memory-mapped token files, in a sample order fixed by the seed.

The training stream is a pure function of (seed, step): sample ``i`` of the run is window
``perm(seed, epoch)[i % n_windows]`` with ``epoch = i // n_windows``, and step ``s`` takes samples
``[s * B, (s + 1) * B)``. Nothing about the data order needs checkpointing, so a resumed run
sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch


class TokenWindows:
    """Non-overlapping ``seq_len`` windows over files concatenated in list order.

    Windows may straddle a file boundary (files are arbitrary cuts of one token stream);
    the tail shorter than ``seq_len`` is dropped. ``max_tokens`` keeps only the first windows.
    """

    def __init__(
        self,
        files: Sequence[str | Path],
        dtype: str,
        seq_len: int,
        max_tokens: int | None = None,
    ) -> None:
        if seq_len < 2:
            raise ValueError(f"seq_len: must be >= 2, got {seq_len}")
        self.seq_len = seq_len
        self._parts = [_open(Path(f), dtype) for f in files]
        self._parts = [p for p in self._parts if len(p)]
        lengths = np.array([len(p) for p in self._parts], dtype=np.int64)
        # _starts[k] = global offset of file k; a trailing total makes searchsorted simple.
        self._starts = np.concatenate([[0], np.cumsum(lengths)])
        self.n_tokens = int(self._starts[-1])
        usable = self.n_tokens if max_tokens is None else min(self.n_tokens, max_tokens)
        self.n_windows = usable // seq_len

    def __len__(self) -> int:
        return self.n_windows

    def _slice(self, start: int, stop: int) -> np.ndarray:
        k = int(np.searchsorted(self._starts, start, side="right")) - 1
        chunks = []
        while start < stop:
            offset = start - int(self._starts[k])
            take = min(stop - start, len(self._parts[k]) - offset)
            chunks.append(np.asarray(self._parts[k][offset : offset + take]))
            start += take
            k += 1
        return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)

    def get(self, indices: Sequence[int] | np.ndarray) -> torch.Tensor:
        """Windows by index as an int64 tensor of shape (len(indices), seq_len)."""
        out = np.empty((len(indices), self.seq_len), dtype=np.int64)
        for row, w in enumerate(indices):
            if not 0 <= w < self.n_windows:
                raise IndexError(f"window {w} outside [0, {self.n_windows})")
            out[row] = self._slice(int(w) * self.seq_len, (int(w) + 1) * self.seq_len)
        return torch.from_numpy(out)

    def all(self) -> torch.Tensor:
        return self.get(np.arange(self.n_windows))


def _open(path: Path, dtype: str) -> np.ndarray:
    if path.stat().st_size == 0:
        return np.empty(0, dtype=dtype)
    # Token files are little-endian flat arrays (datatrove .ds); "<" pins the byte order.
    return np.memmap(path, dtype=np.dtype(dtype).newbyteorder("<"), mode="r")


def epoch_permutation(seed: int, epoch: int, n_windows: int) -> np.ndarray:
    """The window order of one epoch: a fresh permutation per epoch, fixed by (seed, epoch)."""
    # A SeedSequence over both ints (not seed + epoch) so seeds never alias across epochs.
    rng = np.random.default_rng(np.random.SeedSequence([seed, epoch, 0x5EED]))
    return rng.permutation(n_windows)


def derived_seed(*parts: int) -> int:
    """A 63-bit seed from several ints (e.g. run seed, stream tag, step) without collisions
    between (seed, step) pairs, for ``torch.Generator.manual_seed``."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1, np.uint64)[0] >> 1)


class TrainSchedule:
    """Which windows each optimizer step trains on, for an exact (possibly fractional) epoch count.

    ``total_samples = round(epochs * n_windows)``; the last step may be shorter than
    ``batch_size`` so the run sees exactly that many samples.
    """

    def __init__(self, n_windows: int, epochs: float, batch_size: int, seed: int) -> None:
        if n_windows < 1:
            raise ValueError("data: the budget has fewer tokens than one sequence (seq_len)")
        self.n_windows, self.batch_size, self.seed = n_windows, batch_size, seed
        self.total_samples = max(int(round(epochs * n_windows)), 1)
        self.total_steps = math.ceil(self.total_samples / batch_size)
        self._cached: tuple[int, np.ndarray] | None = None

    def _perm(self, epoch: int) -> np.ndarray:
        if self._cached is None or self._cached[0] != epoch:
            self._cached = (epoch, epoch_permutation(self.seed, epoch, self.n_windows))
        return self._cached[1]

    def samples_after(self, step: int) -> int:
        """Samples seen once step ``step`` (0-based) has been taken."""
        return min((step + 1) * self.batch_size, self.total_samples)

    def epoch_after(self, step: int) -> float:
        return self.samples_after(step) / self.n_windows

    def windows(self, step: int) -> np.ndarray:
        """Window indices of step ``step``, in order."""
        if not 0 <= step < self.total_steps:
            raise IndexError(f"step {step} outside [0, {self.total_steps})")
        first, stop = step * self.batch_size, self.samples_after(step)
        out = np.empty(stop - first, dtype=np.int64)
        for row, sample in enumerate(range(first, stop)):
            epoch, pos = divmod(sample, self.n_windows)
            out[row] = self._perm(epoch)[pos]
        return out
