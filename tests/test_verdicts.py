"""Statistics and verdicts: hand-computed intervals and every branch of the decision."""

import math

import pytest

from verify.verdicts import Summary, decide, summarize


def test_t_interval_hand_computed():
    # values 1,2,3: mean 2, sd 1, t(0.975, 2) = 4.302652729911275 -> half width 4.3027/sqrt(3)
    s = summarize([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)
    assert s.mean == 2.0 and s.std == 1.0 and s.method == "t"
    assert s.interval == pytest.approx((2.0 - half, 2.0 + half))


def test_single_or_identical_values_give_a_point():
    assert summarize([1.09]).interval == (1.09, 1.09)
    assert summarize([1.0, 1.0, 1.0]).method == "point"


def test_bootstrap_is_reproducible_and_inside_range():
    values = [0.1, 0.5, 0.2, 0.9, 0.3]
    a, b = summarize(values, "bootstrap"), summarize(values, "bootstrap")
    assert a == b
    assert min(values) <= a.interval[0] <= a.mean <= a.interval[1] <= max(values)


def test_rejects_nan():
    with pytest.raises(ValueError, match="non-finite"):
        summarize([1.0, float("nan")])


def point(v):
    return Summary(1, v, 0.0, (v, v), "point")


def spread(low, high):
    return Summary(5, (low + high) / 2, 1.0, (low, high), "t")


@pytest.mark.parametrize("summary,expected", [
    (spread(0.98, 0.99), ("reproduced", None)),
    (spread(0.90, 0.94), ("not reproduced", "below")),
    (spread(1.02, 1.05), ("not reproduced", "above")),
    (spread(0.94, 0.99), ("inconclusive", "below")),
    (spread(0.99, 1.03), ("inconclusive", "above")),
])
def test_equal_within_tolerance(summary, expected):
    v = decide([], summary, 0.99, "equal", 0.01)  # band [0.98, 1.00]
    assert (v.status, v.direction) == expected


def test_equal_range_claim():
    assert decide([], spread(0.993, 0.999), (0.992, 1.0), "equal", 0.0).status == "reproduced"
    assert decide([], spread(0.95, 0.96), (0.992, 1.0), "equal", 0.001).label == "not reproduced (below)"


def test_one_sided():
    assert decide([], spread(0.11, 0.2), 0.10, "at_least", 0.0).status == "reproduced"
    assert decide([], spread(0.01, 0.05), 0.10, "at_least", 0.0).label == "not reproduced (below)"
    assert decide([], spread(0.05, 0.12), 0.10, "at_least", 0.0).status == "inconclusive"
    assert decide([], spread(0.0, 0.009), 0.01, "at_most", 0.0).status == "reproduced"
    assert decide([], spread(0.02, 0.03), 0.01, "at_most", 0.0).label == "not reproduced (above)"


def test_exact_needs_every_seed():
    assert decide([0.0, 0.0], point(0.0), 0.0, "exact", 0.0, kind="exact").status == "reproduced"
    v = decide([0.0, 1e-12], spread(0.0, 1e-12), 0.0, "exact", 0.0, kind="exact")
    assert v.label == "not reproduced (above)" and "1 of 2" in v.reason


def test_quickstart_like_case():
    # Retention measured 1.0904 on a seed against a claimed 1.0000 printed to 4 decimals.
    v = decide([1.0904], point(1.0904), 1.0, "equal", 0.00005, kind="exact")
    assert v.label == "not reproduced (above)"
