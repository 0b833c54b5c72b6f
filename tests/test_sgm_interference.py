"""Interference under a lock mask, measured operationally (spec §3.1, §3.5 item 7)."""

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from implementations.common.run_context import RunContext
from implementations.sgm.interference import SupportTask, masked_update
from implementations.sgm.protocols import gradient_interference


@settings(max_examples=30, deadline=None)
@given(dim=st.integers(2, 100), seed=st.integers(0, 2**32 - 1), lr=st.floats(1e-3, 10.0))
def test_masked_update_is_exactly_zero_on_locked_coordinates(dim, seed, lr):
    rng = np.random.default_rng(seed)
    lock = rng.random(dim) < 0.5
    update = masked_update(rng.normal(size=dim) * 100, lock, lr)
    assert np.all(update[lock] == 0.0)


def test_support_task_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    task = SupportTask(12, np.array([1, 4, 5, 9]), 3, rng)
    x = rng.normal(size=12)
    eps = 1e-6
    numeric = np.array([(task.loss(x + eps * e) - task.loss(x - eps * e)) / (2 * eps) for e in np.eye(12)])
    np.testing.assert_allclose(task.gradient(x), numeric, atol=1e-8)


def test_interference_is_zero_only_where_the_old_task_depends_on_locked_coordinates_alone():
    out = gradient_interference(context=RunContext(0, "cpu", None))
    assert out == gradient_interference(context=RunContext(0, "cpu", None))
    assert json.loads(json.dumps(out)) == out
    for scenario in ("disjoint", "shared_free", "shared_locked"):
        assert out[f"{scenario}_max_abs_change_locked"] == 0.0
    for scenario in ("disjoint", "shared_locked"):
        assert out[f"{scenario}_max_abs_delta_old_loss_per_step"] == 0.0
        assert out[f"{scenario}_old_retention"] == 1.0
    # A free shared block carries interference; locking the old task's private block changes nothing.
    assert out["shared_free_mean_cosine_old_gradient_update"] > 0.1
    assert out["shared_free_old_retention"] > 1.5
    assert out["shared_free_old_retention"] == out["shared_unlocked_old_retention"]
    # Locking the shared block too removes the interference at a plasticity cost.
    assert out["shared_locked_new_loss_reduction"] < out["shared_free_new_loss_reduction"]
