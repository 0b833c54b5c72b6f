"""Composed metrics: `difference` and `ratio` of output keys or of nested metric specifications."""

import pytest

from verify import metrics
from verify.ledger import LedgerError, load_ledger
from verify.metrics import MetricInputError, check_args, compute
from test_ledger import VALID_CLAIM

# Two paired arms of a 2-task run, plus scalars. Final rows: sparse (0.7 + 0.8) / 2 = 0.75,
# dense (0.5 + 0.6) / 2 = 0.55.
OUTPUTS = {
    "sparse_accuracy_matrix": [[0.9, 0.1], [0.7, 0.8]],
    "dense_accuracy_matrix": [[0.8, 0.2], [0.5, 0.6]],
    "sparse_final_average_accuracy": 0.75,
    "dense_final_average_accuracy": 0.55,
    "anastrophic_step_seconds": 3.0,
    "l2_step_seconds": 4.0,
    "zero_seconds": 0.0,
    "phi_before": [0.5, 0.25, 0.2],
    "phi_after": [0.5, 0.25, 0.3],
    "count": 7,
}


def final(matrix):
    return {"metric": "final_average_accuracy", "matrix": matrix}


def test_difference_of_output_keys_keeps_its_call_form():
    assert metrics.difference(OUTPUTS, key="anastrophic_step_seconds", minus="l2_step_seconds") == -1.0
    assert compute("difference", OUTPUTS, {"key": "count", "minus": "anastrophic_step_seconds"}) == 4.0


def test_difference_of_nested_metrics_is_the_gain_from_the_matrices():
    gain = compute("difference", OUTPUTS, {"key": final("sparse_accuracy_matrix"),
                                           "minus": final("dense_accuracy_matrix")})
    assert gain == pytest.approx(0.2)
    # The same number as the paired-matrix metric, and as the difference of the scalars it replaces.
    assert gain == compute("final_average_accuracy_difference", OUTPUTS,
                           {"matrix": "sparse_accuracy_matrix", "minus": "dense_accuracy_matrix"})
    assert gain == pytest.approx(compute("difference", OUTPUTS, {"key": "sparse_final_average_accuracy",
                                                                 "minus": "dense_final_average_accuracy"}))


def test_operands_mix_keys_and_specifications():
    # R_sparse[1][1] = 0.8 minus the scalar 0.55
    cell = {"metric": "accuracy_cell", "row": -1, "column": 1, "matrix": "sparse_accuracy_matrix"}
    assert compute("difference", OUTPUTS, {"key": cell, "minus": "dense_final_average_accuracy"}) == pytest.approx(0.25)
    # (phi_after[2] - phi_before[2]) / phi_before[2] = 0.1 / 0.2 = 0.5: a ratio of a difference
    change = {"metric": "difference", "key": {"metric": "value", "key": "phi_after", "index": 2},
              "minus": {"metric": "value", "key": "phi_before", "index": 2}}
    assert compute("ratio", OUTPUTS, {"key": change, "over": {"metric": "value", "key": "phi_before", "index": 2}}) \
        == pytest.approx(0.5)


def test_ratio_of_keys_and_of_specifications():
    assert compute("ratio", OUTPUTS, {"key": "anastrophic_step_seconds", "over": "l2_step_seconds"}) == 0.75
    assert metrics.ratio(OUTPUTS, key="count", over="l2_step_seconds") == 1.75
    # 0.75 / 0.55
    assert compute("ratio", OUTPUTS, {"key": final("sparse_accuracy_matrix"), "over": final("dense_accuracy_matrix")}) \
        == pytest.approx(0.75 / 0.55)


def test_ratio_over_zero_is_a_metric_input_error():
    with pytest.raises(MetricInputError) as error:
        compute("ratio", OUTPUTS, {"key": "count", "over": "zero_seconds"})
    message = str(error.value)
    assert "denominator 'zero_seconds' is zero" in message and "\n" not in message
    zero_gain = {"metric": "difference", "key": "count", "minus": "count"}
    with pytest.raises(MetricInputError, match=r"denominator difference\(key='count', minus='count'\) is zero"):
        compute("ratio", OUTPUTS, {"key": "count", "over": zero_gain})


def test_a_missing_output_inside_a_specification_is_named():
    with pytest.raises(MetricInputError, match="no 'hat_accuracy_matrix'"):
        compute("difference", OUTPUTS, {"key": final("sparse_accuracy_matrix"), "minus": final("hat_accuracy_matrix")})


def test_check_args_accepts_what_compute_accepts():
    check_args("difference", {"key": "a", "minus": "b"})
    check_args("ratio", {"key": final("m"), "over": {"metric": "ratio", "key": "a", "over": final("n")}})
    check_args("final_average_accuracy", {"matrix": "m"})


@pytest.mark.parametrize("name,args,problem", [
    ("difference", {"key": {"metric": "final_accuracy"}, "minus": "b"}, "key: unknown metric 'final_accuracy' (known: "),
    ("ratio", {"key": "a", "over": {"metric": "difference", "key": "a", "minus": {"metric": "nope"}}},
     "over.minus: unknown metric 'nope'"),
    ("difference", {"key": "a", "minus": {"metric": "final_average_accuracy", "matrx": "m"}},
     "minus: do not fit metric 'final_average_accuracy': got an unexpected keyword argument 'matrx'"),
    ("ratio", {"key": "a", "over": {"metric": "accuracy_cell", "row": 0}},
     "over: do not fit metric 'accuracy_cell': missing a required argument: 'column'"),
    ("difference", {"key": 3, "minus": "b"}, "key: an operand of 'difference' is an output key (a string)"),
    ("difference", {"key": {"matrix": "m"}, "minus": "b"}, "key: a metric specification names its metric as a string"),
    ("ratio", {"key": "a"}, "do not fit metric 'ratio': missing a required argument: 'over'"),
    ("difference", {"key": "a", "minus": "b", "over": "c"}, "do not fit metric 'difference'"),
    ("accuracy_of_dreams", {}, "unknown metric 'accuracy_of_dreams'"),
])
def test_check_args_rejects_bad_specifications_in_one_line(name, args, problem):
    with pytest.raises(ValueError) as error:
        check_args(name, args)
    message = str(error.value)
    assert problem in message and "\n" not in message, message


def test_check_args_limits_nesting():
    spec = {"metric": "value", "key": "a"}
    for _ in range(metrics.MAX_NESTING + 1):
        spec = {"metric": "difference", "key": spec, "minus": "b"}
    with pytest.raises(ValueError, match=f"nest more than {metrics.MAX_NESTING} deep"):
        check_args(spec.pop("metric"), spec)


CLAIM = VALID_CLAIM  # test_ledger's valid claim

FINDING = '''
[[finding]]
id = "toy-gain"
system = "toy"
of = "toy-claim"
title = "sparse minus dense"
metric = "difference"
metric_args = { key = { metric = "final_average_accuracy", matrix = "sparse_accuracy_matrix" }, minus = MINUS }
protocol = "implementations.sgm.protocols:quickstart_retention"
seeds = [1, 2, 3]
tier = "ci"
device = "any"
'''


def write(tmp_path, minus):
    path = tmp_path / "claims.toml"
    path.write_text(CLAIM + FINDING.replace("MINUS", minus))
    return path


def test_ledger_loads_a_nested_specification_and_computes_it(tmp_path):
    _, finding = load_ledger(write(tmp_path, '{ metric = "final_average_accuracy", matrix = "dense_accuracy_matrix" }'))
    assert finding.metric_args["minus"] == final("dense_accuracy_matrix")
    assert compute(finding.metric, OUTPUTS, finding.metric_args) == pytest.approx(0.2)


@pytest.mark.parametrize("minus,problem", [
    ('{ metric = "final_accuracy", matrix = "dense_accuracy_matrix" }', "minus: unknown metric 'final_accuracy'"),
    ('{ metric = "final_average_accuracy", matrixx = "dense_accuracy_matrix" }',
     "minus: do not fit metric 'final_average_accuracy'"),
    ('{ matrix = "dense_accuracy_matrix" }', "minus: a metric specification names its metric"),
    ("0.5", "minus: an operand of 'difference' is an output key"),
])
def test_ledger_rejects_a_bad_nested_specification_in_one_line(tmp_path, minus, problem):
    path = write(tmp_path, minus)
    with pytest.raises(LedgerError) as error:
        load_ledger(path)
    message = str(error.value)
    assert "\n" not in message, message
    assert f"{path}: finding 'toy-gain': field 'metric_args': {problem}" in message, message
