"""In-memory MinHash + LSH near-duplicate index, vectorised with numpy.

Sized for corpora of tens of MB (the stdlib is ~31 MB, ~3.5M words): word hashes are cached in a
dict, shingle and permutation hashes are uint64 arithmetic that wraps (multiply-shift hashing).
"""

from __future__ import annotations

import zlib

import numpy as np

_MIX = np.uint64(0x9E3779B97F4A7C15)
_CHUNK = 4096  # shingles per block: bounds the (chunk, num_perm) temporary to ~2 MB at 64 perms


def _perm_params(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 2**63, size=num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)
    return a, b


class MinHashIndex:
    """Keeps the first of each group of near-duplicates; `add` says whether a text is new."""

    def __init__(self, threshold: float, ngram: int, num_perm: int, bands: int, seed: int = 0):
        self.threshold = threshold
        self.ngram = ngram
        self.rows = num_perm // bands
        self.bands = bands
        self.a, self.b = _perm_params(num_perm, seed)
        # one multiplier per shingle position so "a b" and "b a" hash differently
        self.pos_mult = _perm_params(ngram, seed + 1)[0]
        self._word_hash: dict[str, int] = {}
        self._buckets: list[dict[bytes, list[int]]] = [{} for _ in range(bands)]
        self._signatures: list[np.ndarray] = []

    def _shingles(self, text: str) -> np.ndarray:
        words = text.split()
        cache = self._word_hash
        for w in set(words).difference(cache):
            cache[w] = zlib.crc32(w.encode("utf-8", "surrogatepass"))
        wh = np.fromiter(map(cache.__getitem__, words), dtype=np.uint64, count=len(words))
        wh = wh * _MIX  # spread the 32-bit crc over 64 bits
        n = len(wh) - self.ngram + 1
        if n <= 0:  # shorter than one shingle: the whole text is one shingle
            return np.array([int((wh * self.pos_mult[0]).sum()) if len(wh) else 0], np.uint64)
        sh = np.zeros(n, dtype=np.uint64)
        for j in range(self.ngram):
            sh += wh[j : j + n] * self.pos_mult[j]
        return np.unique(sh)

    def signature(self, text: str) -> np.ndarray:
        """(num_perm,) uint64: min over shingles of the high 32 bits of (a * s + b)."""
        sh = self._shingles(text)
        sig = np.full(len(self.a), np.iinfo(np.uint64).max, dtype=np.uint64)
        for start in range(0, len(sh), _CHUNK):
            block = sh[start : start + _CHUNK, None] * self.a[None, :] + self.b[None, :]  # (c, P)
            np.minimum(sig, (block >> np.uint64(32)).min(axis=0), out=sig)
        return sig

    def add(self, text: str) -> bool:
        """True if `text` is kept (no indexed doc reaches the threshold); it is then indexed."""
        sig = self.signature(text)
        keys = [sig[i * self.rows : (i + 1) * self.rows].tobytes() for i in range(self.bands)]
        seen: set[int] = set()
        for bucket, key in zip(self._buckets, keys, strict=True):
            for cand in bucket.get(key, ()):
                if cand in seen:
                    continue
                seen.add(cand)
                if float(np.mean(self._signatures[cand] == sig)) >= self.threshold:
                    return False
        idx = len(self._signatures)
        self._signatures.append(sig)
        for bucket, key in zip(self._buckets, keys, strict=True):
            bucket.setdefault(key, []).append(idx)
        return True
