"""The verdict rule of each claim kind (universal, single_run, mean, exact), the ulp fix, and the
properties a reviewer relies on, searched for counterexamples with hypothesis."""

import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from verify.verdicts import MIN_SEEDS, judge, prediction_interval, summarize

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


# --- the ulp fix: equal seeds are the value itself, not a mean one ulp away ------------------------

def test_equal_seeds_at_the_bound_reproduce_an_at_least_claim():
    # np.mean([0.7, 0.7, 0.7]) is 0.6999999999999998: it used to read "not reproduced (below)".
    assert summarize([0.7, 0.7, 0.7]).mean == 0.7
    assert judge([0.7] * 3, 0.7, "at_least", 0.0, "exact").verdict.status == "reproduced"
    assert judge([0.7] * 5, 0.7, "at_least", 0.0, "mean").verdict.status == "reproduced"


def test_equal_seeds_equal_to_the_claim_reproduce_a_zero_tolerance_claim():
    # np.mean([0.1] * 3) is 0.10000000000000002: it used to read "above".
    assert summarize([0.1] * 3).interval == (0.1, 0.1)
    assert judge([0.1] * 3, 0.1, "equal", 0.0, "exact").verdict.status == "reproduced"
    assert judge([0.1] * 5, 0.1, "equal", 0.0, "mean").verdict.status == "reproduced"


# --- universal ----------------------------------------------------------------------------------

def test_universal_claim_names_its_counterexample_seeds():
    # The shape of sgm-quickstart-retention: "1.0000x ... Exactly", half the seeds measure more.
    values = [1.0, 1.09, 1.0, 1.28, 1.0, 1.04, 1.0, 1.0, 1.1, 1.0]
    seeds = [1, 3, 5, 7, 9, 11, 13, 15, 17, 19]
    verdict = judge(values, 1.0, "equal", 0.00005, "universal", seeds).verdict
    assert verdict.label == "not reproduced (above)"
    assert "4 of 10" in verdict.reason and "seed 3: 1.09" in verdict.reason and "seed 7: 1.28" in verdict.reason


def test_universal_without_counterexample_needs_enough_seeds():
    assert judge([0.0] * MIN_SEEDS, 0.0, "exact", 0.0, "universal").verdict.status == "reproduced"
    few = judge([0.0] * (MIN_SEEDS - 1), 0.0, "exact", 0.0, "universal").verdict
    assert few.status == "inconclusive" and "needs at least" in few.reason


def test_universal_counterexample_refutes_at_any_number_of_seeds():
    assert judge([0.0, 0.5], 0.0, "exact", 0.0, "universal").verdict.label == "not reproduced (above)"


@settings(max_examples=300)
@given(values=st.lists(finite, min_size=1, max_size=12), bad=finite, where=st.integers(0, 12),
       claimed=finite, tolerance=st.floats(0, 1e3), comparison=st.sampled_from(["equal", "at_least", "at_most", "exact"]))
def test_a_universal_claim_with_one_violating_seed_is_never_reproduced(values, bad, where, claimed, tolerance,
                                                                       comparison):
    if comparison == "exact":
        tolerance = 0.0
    low, high = {"equal": (claimed - tolerance, claimed + tolerance), "exact": (claimed, claimed),
                 "at_least": (claimed - tolerance, math.inf), "at_most": (-math.inf, claimed + tolerance)}[comparison]
    if low <= bad <= high:
        return  # not a violation
    values = values[:where] + [bad] + values[where:]
    verdict = judge(values, claimed, comparison, tolerance, "universal").verdict
    assert verdict.status == "not reproduced"
    assert f"seed {min(where, len(values) - 1)}" in verdict.reason or "..." in verdict.reason


# --- single_run -----------------------------------------------------------------------------------

def test_prediction_interval_hand_computed():
    # values 1,2,3: mean 2, s 1, t(0.975, 2) = 4.302652729911275 -> half width 4.3027 * sqrt(1 + 1/3)
    low, high = prediction_interval(summarize([1.0, 2.0, 3.0]))
    half = 4.302652729911275 * math.sqrt(4 / 3)
    assert (low, high) == pytest.approx((2 - half, 2 + half))


def test_single_run_number_inside_the_seed_spread_is_reproduced():
    # The shape of sgm-sequential-retention-1000-baseline: 12.79x printed once, seeds spread 4.6-12.8.
    values = [12.8, 4.6, 7.9, 9.3, 6.1]
    judgement = judge(values, 12.79, "equal", 0.005, "single_run")
    assert judgement.verdict.status == "reproduced"
    assert judgement.prediction[0] < 12.79 < judgement.prediction[1]
    # ... and the interval of the mean, which alone would have said "not reproduced", is still reported.
    assert judgement.summary.interval[1] < 12.79


def test_single_run_number_far_outside_the_spread_is_not_reproduced_with_direction():
    values = [0.60, 0.61, 0.62, 0.63, 0.61]
    # The direction says where the measurement lies relative to the claim.
    assert judge(values, 0.50, "equal", 0.0005, "single_run").verdict.label == "not reproduced (above)"
    assert judge(values, 0.70, "equal", 0.0005, "single_run").verdict.label == "not reproduced (below)"


def test_single_run_with_one_seed_is_inconclusive():
    assert judge([0.5], 0.5, "equal", 0.0, "single_run", min_seeds=1).verdict.status == "inconclusive"


@settings(max_examples=300)
@given(values=st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=12), tolerance=st.floats(0, 10))
@example(values=[0.1, 0.2], tolerance=0.0)
@example(values=[0.7, 0.7], tolerance=0.0)
def test_a_single_run_claim_equal_to_the_sample_mean_is_always_reproduced(values, tolerance):
    claimed = summarize(values).mean
    # min_seeds=2: the statistical rule alone (the ledger asks for MIN_SEEDS seeds; see the next test).
    assert judge(values, claimed, "equal", tolerance, "single_run", min_seeds=2).verdict.status == "reproduced"


@settings(max_examples=100)
@given(values=st.lists(st.floats(-1e3, 1e3), min_size=MIN_SEEDS, max_size=12))
def test_with_the_ledger_minimum_of_seeds_the_sample_mean_is_reproduced(values):
    claimed = summarize(values).mean
    assert judge(values, claimed, "equal", 0.0, "single_run").verdict.status == "reproduced"


# --- mean -----------------------------------------------------------------------------------------

def test_mean_claim_uses_the_confidence_interval():
    values = [0.80, 0.82, 0.81, 0.79, 0.80]
    assert judge(values, 0.80, "equal", 0.02, "mean").verdict.status == "reproduced"
    assert judge(values, 0.90, "equal", 0.01, "mean").verdict.label == "not reproduced (below)"
    assert judge(values, 0.805, "equal", 0.0, "mean").verdict.status == "inconclusive"


def test_a_stochastic_claim_with_too_few_seeds_is_never_definite():
    for kind in ("mean", "single_run"):
        verdict = judge([0.1, 0.2, 0.15], 5.0, "equal", 0.0, kind).verdict
        assert verdict.status == "inconclusive" and "would read 'not reproduced (above)'" not in verdict.reason
        assert "needs at least 5" in verdict.reason


@settings(max_examples=200)
@given(values=st.lists(finite, min_size=1, max_size=MIN_SEEDS - 1), claimed=finite, tolerance=st.floats(0, 1e3),
       kind=st.sampled_from(["mean", "single_run"]))
def test_fewer_than_min_seeds_gives_inconclusive_for_stochastic_kinds(values, claimed, tolerance, kind):
    assert judge(values, claimed, "equal", tolerance, kind).verdict.status == "inconclusive"


# --- exact ----------------------------------------------------------------------------------------

def test_exact_kind_decides_from_any_number_of_seeds():
    assert judge([203_530], 203_530, "exact", 0.0, "exact").verdict.status == "reproduced"
    assert judge([203_200], 203_000, "equal", 500, "exact").verdict.status == "reproduced"
    assert judge([204_000], 203_000, "equal", 500, "exact").verdict.label == "not reproduced (above)"


def test_kind_and_comparison_must_fit():
    with pytest.raises(ValueError, match="single_run claim cannot be judged with comparison 'exact'"):
        judge([1.0] * 5, 1.0, "exact", 0.0, "single_run")


# --- properties across kinds ----------------------------------------------------------------------

small = st.floats(min_value=-100, max_value=100, allow_nan=False).map(lambda x: round(x, 3))


@settings(max_examples=200)
@given(values=st.lists(small, min_size=1, max_size=10), claimed=small, tolerance=st.floats(0, 10).map(lambda x: round(x, 3)),
       comparison=st.sampled_from(["equal", "at_least", "at_most"]))
def test_an_exact_claim_is_reproduced_exactly_when_every_seed_satisfies_it(values, claimed, tolerance, comparison):
    satisfied = {"equal": lambda v: claimed - tolerance <= v <= claimed + tolerance,
                 "at_least": lambda v: v >= claimed - tolerance, "at_most": lambda v: v <= claimed + tolerance}[comparison]
    verdict = judge(values, claimed, comparison, tolerance, "exact").verdict
    assert (verdict.status == "reproduced") == all(satisfied(v) for v in values)
    assert verdict.status in ("reproduced", "not reproduced")


@settings(max_examples=200)
@given(values=st.lists(st.integers(-1000, 1000), min_size=MIN_SEEDS, max_size=10), claimed=st.integers(-1000, 1000),
       tolerance=st.integers(0, 100), shift=st.integers(-10_000, 10_000),
       kind=st.sampled_from(["mean", "single_run", "universal"]))
def test_verdicts_do_not_change_when_values_and_claim_shift_together(values, claimed, tolerance, shift, kind):
    # Integers keep the shifted arithmetic exact, so any difference would be the rule's, not round-off's.
    before = judge([float(v) for v in values], float(claimed), "equal", float(tolerance), kind).verdict
    after = judge([float(v + shift) for v in values], float(claimed + shift), "equal", float(tolerance), kind).verdict
    assert (before.status, before.direction) == (after.status, after.direction)
