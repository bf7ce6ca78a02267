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


def _jaccard(a: str, b: str, n: int = 5) -> float:
    """True Jaccard similarity of the two texts' word n-gram sets."""
    grams = [{tuple(w[i : i + n]) for i in range(len(w) - n + 1)} for w in (a.split(), b.split())]
    return len(grams[0] & grams[1]) / len(grams[0] | grams[1])


def test_threshold_separates_near_duplicates_from_partial_overlap():
    a, b = make_texts(2, seed=5, words=(300, 301))
    mostly = " ".join(a.split()[:270] + b.split()[270:])  # the last tenth rewritten
    half = " ".join(a.split()[:150] + b.split()[150:])
    assert 0.75 < _jaccard(a, mostly) < 0.85 and 0.3 < _jaccard(a, half) < 0.36
    for threshold, keeps_mostly in ((0.6, False), (0.9, True)):
        index = MinHashIndex(threshold=threshold, ngram=5, num_perm=128, bands=32)
        assert index.add(a)
        assert index.add(mostly) is keeps_mostly  # J ~ 0.8: a near duplicate below 0.8 only
        assert index.add(half)  # J ~ 1/3: kept at either threshold


def test_signature_deterministic_and_order_sensitive():
    one = MinHashIndex(0.8, 3, 32, 8, seed=0).signature("a b c d e f")
    two = MinHashIndex(0.8, 3, 32, 8, seed=0).signature("a b c d e f")
    assert (one == two).all()
    other = MinHashIndex(0.8, 3, 32, 8, seed=0).signature("f e d c b a")
    assert not (one == other).all()
