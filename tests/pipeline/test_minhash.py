"""MinHash near-dedup: near copies dropped, unrelated documents kept, deterministic."""

from __future__ import annotations

from pipeline_corpora import make_texts, near_copy

from pipeline.minhash import MinHashIndex


def test_near_copy_dropped_unrelated_kept():
    texts = make_texts(30)
    index = MinHashIndex(threshold=0.8, ngram=5, num_perm=64, bands=16)
    assert all(index.add(t) for t in texts)
    assert not index.add(near_copy(texts[4]))
    assert not index.add(texts[7])  # an exact copy is also a near copy


def test_threshold_separates_half_overlap():
    a, b = make_texts(2, seed=5, words=(300, 301))
    half = " ".join(a.split()[:150] + b.split()[150:])
    strict = MinHashIndex(threshold=0.9, ngram=5, num_perm=128, bands=32)
    strict.add(a)
    assert strict.add(half)  # ~1/3 Jaccard: kept at 0.9


def test_signature_deterministic_and_order_sensitive():
    one = MinHashIndex(0.8, 3, 32, 8, seed=0).signature("a b c d e f")
    two = MinHashIndex(0.8, 3, 32, 8, seed=0).signature("a b c d e f")
    assert (one == two).all()
    other = MinHashIndex(0.8, 3, 32, 8, seed=0).signature("f e d c b a")
    assert not (one == other).all()
