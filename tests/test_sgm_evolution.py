"""Family A (spec §1.1-1.3): tasks, the evolutionary locker and the README quick-start."""

import json

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from implementations.common.run_context import RunContext
from implementations.sgm.evolution import (
    MaskedRegionTask,
    SGMBaseline,
    SGMWithLocking,
    SparseRegionTask,
    contradictory_tasks,
    non_overlap_tasks,
    partial_overlap_tasks,
    random_mask_tasks,
)
from implementations.sgm.protocols import quickstart_retention

regions = st.tuples(st.floats(0.0, 0.9), st.floats(0.05, 1.0)).map(lambda r: (min(r), max(r))).filter(
    lambda r: r[1] - r[0] >= 0.05
)


@settings(max_examples=25, deadline=None)
@given(dim=st.integers(8, 80), region=regions, seed=st.integers(0, 2**31 - 1), data=st.data())
def test_sparse_region_loss_depends_only_on_its_region(dim, region, seed, data):
    task = SparseRegionTask(dim, region, seed=seed)
    start, end = task.active_region
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x = rng.normal(size=dim)
    moved = x + rng.normal(size=dim) * 10.0
    moved[start:end] = x[start:end]
    assert task.loss(moved) == task.loss(x)
    assert not task.W[:start].any() and not task.W[end:].any()
    assert task.W.dtype == np.float32 and task.target.dtype == np.float32


def test_task_seed_reseeds_the_global_stream_w_block_first():
    task = SparseRegionTask(10, (0.2, 0.5), seed=7)
    np.random.seed(7)
    w_block = np.random.randn(3, 32) * 0.1
    target = np.random.randn(32) * 0.3
    np.testing.assert_array_equal(task.W[2:5], w_block.astype(np.float32))
    np.testing.assert_array_equal(task.target, target.astype(np.float32))
    # The optimizer's next draw continues that stream (the original's side effect).
    np.random.seed(7)
    np.random.randn(3 * 32 + 32)
    expected_next = np.random.rand()
    SparseRegionTask(10, (0.2, 0.5), seed=7)
    assert np.random.rand() == expected_next


def test_task_generators_regions_and_contradiction():
    assert [t.active_region for t in non_overlap_tasks(40, 4, seed=3)] == [(0, 10), (10, 20), (20, 30), (30, 40)]
    assert [t.active_region for t in partial_overlap_tasks(40, 4, seed=3)] == [(0, 10), (5, 15), (10, 20), (15, 25)]
    masks = random_mask_tasks(5, 6, seed=0)
    assert all(isinstance(t, MaskedRegionTask) and t.active_indices.size >= 1 for t in masks)
    first, second = contradictory_tasks(50, seed=4)
    assert first.active_region == second.active_region == (10, 40)
    np.testing.assert_array_equal(second.target, -SparseRegionTask(50, (0.2, 0.8), seed=5).target)


@settings(max_examples=15, deadline=None)
@given(
    dim=st.integers(12, 48),
    split=st.floats(0.3, 0.7),
    seed=st.integers(0, 10_000),
    budget=st.integers(60, 130),
)
def test_locked_coordinates_keep_their_values_across_step_calls(dim, split, seed, budget):
    """After reset() the next population copies best_x on locked coordinates and no mutation
    touches them, so best_x keeps them bit for bit (while >= 5 coordinates stay free)."""
    model = SGMWithLocking(dim)
    first = SparseRegionTask(dim, (0.0, split), seed=seed)
    second = SparseRegionTask(dim, (split, 1.0), seed=seed + 1)
    model.step(first, budget)
    locked_before = model.lock.copy()
    values_before = model.best_x[locked_before].copy()
    model.reset()
    model.step(second, budget)
    assume((~model.lock).sum() >= 5)  # otherwise the capacity fallback mutates everything (§1.3)
    np.testing.assert_array_equal(model.best_x[locked_before], values_before)
    assert model.lock[locked_before].all()  # locks are permanent


@settings(max_examples=10, deadline=None)
@given(dim=st.integers(12, 40), seed=st.integers(0, 10_000), budget=st.integers(60, 130))
def test_no_mutation_writes_a_locked_coordinate_without_reset(dim, seed, budget):
    """Quick-start style (no reset): elites may differ on a coordinate when it locks, so best_x can
    switch between their values, but every value a locked coordinate takes was already there."""
    model = SGMWithLocking(dim)
    first = SparseRegionTask(dim, (0.0, 0.5), seed=seed)
    second = SparseRegionTask(dim, (0.5, 1.0), seed=seed + 1)
    model.step(first, budget)
    locked = np.flatnonzero(model.lock)
    values_before = [set(model.pop[:, d].tolist()) for d in locked]
    model.step(second, budget)
    assume((~model.lock).sum() >= 5)
    for d, before in zip(locked, values_before):
        assert set(model.pop[:, d].tolist()) <= before


def test_only_coordinates_the_task_depends_on_lock():
    model = SGMWithLocking(60)
    task = SparseRegionTask(60, (0.25, 0.5), seed=11)
    model.step(task, 300)
    assert model.lock.any()
    assert not model.lock[:15].any() and not model.lock[30:].any()
    assert model.uncounted_evals > 0  # ablation calls are outside the budget (§1.3)


def test_reset_keeps_best_x_lock_and_statistics():
    model = SGMWithLocking(30)
    model.step(SparseRegionTask(30, (0.0, 0.5), seed=1), 150)
    kept = model.best_x, model.lock.copy(), model.causal_sum.copy(), model.group_credits.copy()
    model.reset()
    assert model.pop is None and model.best_loss == np.inf
    assert model.best_x is kept[0]
    np.testing.assert_array_equal(model.lock, kept[1])
    np.testing.assert_array_equal(model.causal_sum, kept[2])
    np.testing.assert_array_equal(model.group_credits, kept[3])


def test_baseline_restarts_from_a_new_population_after_reset():
    model = SGMBaseline(20)
    task = SparseRegionTask(20, (0.0, 1.0), seed=2)
    model.step(task, 120)
    population_after_first = model.pop.copy()
    model.reset()
    model.step(task, 120)
    assert not np.isin(model.pop, population_after_first).any()


def test_quickstart_is_deterministic():
    a = quickstart_retention(context=RunContext(5, "cpu", None), dim=40, steps=200)
    b = quickstart_retention(context=RunContext(5, "cpu", None), dim=40, steps=200)
    assert a == b
    assert json.loads(json.dumps(a)) == a


def test_quickstart_reproduces_the_readme_run():
    """README quick-start prints 'Locked dims: 72/100' and 'Task 1 retention: 1.0904x' (spec §1.3)."""
    out = quickstart_retention(context=RunContext(1, "cpu", None))
    assert out["retention"] == 1.090374505621258
    assert f"{out['retention']:.4f}" == "1.0904"
    assert (out["locked_after_task1"], out["locked_total"]) == (36, 72)
    assert out["locked_in_task1_region"] == 36
