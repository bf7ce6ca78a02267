import pytest

from analysis.binomial import clopper_pearson


def test_clopper_pearson_matches_known_exact_intervals() -> None:
    # 5 of 10: the textbook exact 95% interval is [0.187, 0.813].
    lo, hi = clopper_pearson(5, 10)
    assert lo == pytest.approx(0.1871, abs=1e-4) and hi == pytest.approx(0.8129, abs=1e-4)
    # All hits: the upper edge is 1 and the lower (0.025)^(1/n).
    lo, hi = clopper_pearson(40, 40)
    assert hi == 1.0 and lo == pytest.approx(0.025 ** (1 / 40))
    assert clopper_pearson(0, 20)[0] == 0.0
    # A lower level gives a narrower interval around the same count.
    lo90, hi90 = clopper_pearson(190, 200, level=0.90)
    lo95, hi95 = clopper_pearson(190, 200)
    assert lo95 < lo90 < 0.95 < hi90 < hi95


def test_clopper_pearson_names_a_bad_count() -> None:
    with pytest.raises(ValueError, match="k=5, n=3"):
        clopper_pearson(5, 3)
