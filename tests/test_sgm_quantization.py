"""Model-based variant (spec §1.4) and the 8-bit quantisation test (§2.1 #11)."""

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from implementations.common.run_context import RunContext
from implementations.sgm.quantization import (
    NNModel,
    SGMWithLockingModel,
    TransformerModel,
    build_tasks_for_model,
    quantize_8bit,
)
from implementations.sgm.protocols import quantization_retention


def test_parameter_counts_and_task_segments():
    assert NNModel().n_params == 2778
    assert TransformerModel().n_params == 3 * 64 * 32 + 32 * 32 + 32 * 10
    tasks = build_tasks_for_model(NNModel(), 3, seed=0)
    assert [int(t.input_mask.sum()) for t in tasks] == [21, 21, 22]
    assert not np.any(tasks[0].inputs[:, 21:])


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), size=st.integers(1, 500), scale=st.floats(1e-3, 1e3))
def test_8bit_quantization_error_is_at_most_half_a_step(seed, size, scale):
    params = np.random.default_rng(seed).normal(size=size) * scale
    assert np.max(np.abs(quantize_8bit(params) - params)) <= np.max(np.abs(params)) / 254 * (1 + 1e-12)


def test_reset_bug_rerandomises_locked_coordinates():
    np.random.seed(0)
    model = NNModel(8, 6, 4, 3)
    tasks = build_tasks_for_model(model, 2, seed=1)
    searcher = SGMWithLockingModel(model.n_params)
    searcher.step(tasks[0], 80)
    locked, values = searcher.lock.copy(), searcher.best_x[searcher.lock].copy()
    assert locked.any()
    searcher.reset()
    assert searcher.best_x is None
    searcher.step(tasks[1], 80)
    assert np.all(searcher.best_x[locked] != values)


def test_quantization_protocol_smoke_is_deterministic():
    small = dict(n_runs=1, evals_per_task=60, models=("nn",))
    out = quantization_retention(context=RunContext(0, "cpu", None), **small)
    assert out == quantization_retention(context=RunContext(0, "cpu", None), **small)
    assert json.loads(json.dumps(out)) == out
    assert out["nn_task0_locked_kept_count"] == [0]
    assert abs(out["nn_retention_8bit_locked"] - out["nn_retention_float_locked"]) < 0.05
