"""Metric definitions: hand-computed cases and hypothesis properties of the identities."""

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from verify import metrics
from verify.metrics import AccuracyMatrix

# Hand-computed 3-task example. Rows: after training task i; columns: task j.
R3 = [[0.9, 0.1, 0.2],
      [0.7, 0.8, 0.1],
      [0.5, 0.9, 0.6]]
B3 = [0.1, 0.2, 0.05]


def test_hand_computed_three_tasks():
    m = AccuracyMatrix(np.array(R3), np.array(B3))
    assert m.final_average_accuracy() == pytest.approx((0.5 + 0.9 + 0.6) / 3)
    # first-minus-last: task0 0.9-0.5=0.4, task1 0.8-0.9=-0.1 -> mean over T-1 = 0.15
    assert m.forgetting_first_minus_last() == pytest.approx(0.15)
    assert m.forgetting_first_minus_last(divisor="T") == pytest.approx(0.3 / 3)
    assert m.forgetting_first_minus_last(clip=True) == pytest.approx(0.2)
    # max-minus-last: task0 max(0.9,0.7,0.5)-0.5=0.4; task1 max(0.8,0.9)-0.9=0
    assert m.forgetting_max_minus_last() == pytest.approx(0.2)
    assert m.bwt() == pytest.approx(-0.15)
    # fwt: (R[0][1]-b1 + R[1][2]-b2)/2 = (0.1-0.2 + 0.1-0.05)/2 = -0.025
    assert m.fwt() == pytest.approx(-0.025)
    assert m.sample_weighted_final_accuracy([100, 100, 200]) == pytest.approx((50 + 90 + 120) / 400)
    assert list(m.plasticity()) == [0.9, 0.8, 0.6]


def test_registry_reads_outputs():
    outputs = {"accuracy_matrix": R3, "untrained_accuracy": B3, "loss_before": [2.0, 4.0], "loss_after": [3.0, 4.0],
               "n": 7, "parameter_count": 203_000, "row": [[1, 2], [3, 4]]}
    assert metrics.compute("final_average_accuracy", outputs, {}) == pytest.approx(2.0 / 3)
    assert metrics.compute("accuracy_cell", outputs, {"row": -1, "column": 0}) == 0.5
    assert metrics.compute("retention_ratio", outputs, {"task": 0}) == 1.5
    assert metrics.compute("mean_retention_ratio", outputs, {}) == 1.5
    assert metrics.compute("value", outputs, {"key": "n"}) == 7.0
    assert metrics.compute("value", outputs, {"key": "row", "index": [1, 0]}) == 3.0
    assert metrics.compute("parameter_count", outputs, {}) == 203_000.0
    assert metrics.compute("minimum", {"a": [0.99, 1.0, 0.98]}, {"key": "a"}) == 0.98
    assert metrics.compute("maximum", {"a": [0.99, 1.0, 0.98]}, {"key": "a"}) == 1.0
    assert metrics.compute("difference", {"a": 3.0, "b": 1.0}, {"key": "a", "minus": "b"}) == 2.0
    with pytest.raises(metrics.MetricInputError, match="non-empty list"):
        metrics.compute("minimum", {"a": []}, {"key": "a"})
    paired = {"sparse_accuracy_matrix": [[0.9]], "dense_accuracy_matrix": [[0.75]]}
    assert metrics.compute("final_average_accuracy_difference", paired,
                           {"matrix": "sparse_accuracy_matrix", "minus": "dense_accuracy_matrix"}) == pytest.approx(0.15)
    with pytest.raises(metrics.MetricInputError, match="no 'missing'"):
        metrics.compute("value", outputs, {"key": "missing"})


def test_fwt_needs_untrained_row():
    with pytest.raises(ValueError, match="untrained"):
        AccuracyMatrix(np.array(R3)).fwt()


def test_rejects_non_square():
    with pytest.raises(ValueError, match="square"):
        AccuracyMatrix(np.zeros((2, 3)))


unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@st.composite
def accuracy_matrices(draw):
    T = draw(st.integers(min_value=1, max_value=8))
    return AccuracyMatrix(draw(arrays(np.float64, (T, T), elements=unit)), draw(arrays(np.float64, (T,), elements=unit)))


@settings(max_examples=200, deadline=None)
@given(accuracy_matrices())
@example(AccuracyMatrix(np.array([[0.5, 0.0], [0.9, 1.0]])))  # last row above the first: clipped forgetting is 0
def test_bwt_is_minus_first_minus_last_forgetting(m):
    assert m.bwt() == pytest.approx(-m.forgetting_first_minus_last(), abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(accuracy_matrices())
def test_max_based_forgetting_never_negative_and_bounds_first_based(m):
    assert m.forgetting_max_minus_last() >= 0.0
    assert m.forgetting_max_minus_last() >= m.forgetting_first_minus_last(clip=True) - 1e-12
    assert m.forgetting_first_minus_last(clip=True) >= m.forgetting_first_minus_last() - 1e-12


@settings(max_examples=100, deadline=None)
@given(accuracy_matrices())
def test_divisor_variants_scale(m):
    if m.T > 1:
        assert m.forgetting_first_minus_last(divisor="T") == pytest.approx(
            m.forgetting_first_minus_last(divisor="T-1") * (m.T - 1) / m.T, abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(accuracy_matrices())
def test_no_forgetting_when_columns_constant(m):
    constant = AccuracyMatrix(np.tile(m.R[-1], (m.T, 1)))
    assert constant.forgetting_max_minus_last() == 0.0
    assert constant.bwt() == 0.0
