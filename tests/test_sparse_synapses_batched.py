"""Seed-batched Permuted MNIST MLP (`implementations/sparse_synapses/seed_batched.py`) against the sequential protocol.

Each seed of a batched run must give what `permuted_mnist_mlp(seed=s)` gives after the runner's
`seed_everything(s)`: the same accuracy matrices and every other output within 1e-5 (timings aside).
On one CPU thread the two are bitwise equal. With more threads MKL may split one product's sum across
threads while the batched product runs one seed per thread, so the last bits can differ and a k-WTA
winner can flip: the comparisons run on one thread. Real MNIST files; a missing one skips, naming it.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from implementations.common.seed_batching import each_seed_sequentially
from implementations.common.seeding import seed_everything
from implementations.sparse_synapses.protocols import (
    ARMS,
    permuted_mnist_mlp,
    permuted_mnist_mlp_tuned_lr,
    split_mnist_task_incremental,
)
from implementations.sparse_synapses.seed_batched import (
    permuted_mnist_mlp_seeds,
    permuted_mnist_mlp_tuned_lr_seeds,
    split_mnist_task_incremental_seeds,
)

TOLERANCE = 1e-5
SMALL = dict(arms=list(ARMS), hidden_units=16, hidden_layers=1, percent_on_fc=0.125, n_tasks=2, epochs=2,
             batch_size=24, train_size=60, test_size=40)


@pytest.fixture(scope="module")
def data_dir(mnist_data_dir):
    return mnist_data_dir


pytestmark = pytest.mark.usefixtures("one_thread")


def sequential(seeds, data_dir, device="cpu", **params) -> list[dict]:
    """What the run engine does without batching: seed everything, then one protocol call per seed."""
    return each_seed_sequentially(permuted_mnist_mlp, seeds, device=device, data_dir=data_dir, **params)


def batched(seeds, data_dir, device="cpu", **params) -> list[dict]:
    seed_everything(12_345)  # the global state at entry must not matter: every seed's draws are its own
    return permuted_mnist_mlp_seeds(seeds=seeds, device=device, data_dir=data_dir, **params)


def largest_difference(batched_outputs: dict, sequential_outputs: dict) -> float:
    """Asserts the same keys in the same order, equal accuracy matrices and equal non-numbers; returns
    the largest absolute difference of the other numbers (the `_seconds` timings are not compared)."""
    assert list(batched_outputs) == list(sequential_outputs)
    largest = 0.0
    for key, expected in sequential_outputs.items():
        if key.endswith("_seconds"):
            continue
        got = batched_outputs[key]
        if key.endswith("accuracy_matrix") or not isinstance(expected, float):
            assert got == expected, key
        else:
            assert math.isfinite(got), key
            largest = max(largest, abs(got - expected))
    return largest


def assert_same_runs(batched_runs: list[dict], sequential_runs: list[dict]) -> None:
    assert len(batched_runs) == len(sequential_runs)
    for got, expected in zip(batched_runs, sequential_runs):
        assert largest_difference(got, expected) <= TOLERANCE


@st.composite
def small_protocols(draw) -> dict:
    """A few tasks of a few dozen images, narrow layers, and every switch the protocol has."""
    hidden_units = draw(st.sampled_from([8, 16, 24]))
    momentum = draw(st.sampled_from([0.0, 0.9]))
    return dict(
        arms=["dense", *draw(st.lists(st.sampled_from(ARMS[1:]), unique=True))],
        hidden_units=hidden_units, hidden_layers=draw(st.integers(1, 2)),
        percent_on_fc=draw(st.integers(1, 3)) / hidden_units, weight_density_fc=draw(st.sampled_from([0.1, 0.3])),
        k_inference_factor=draw(st.sampled_from([1.0, 1.5])), boost_strength=draw(st.sampled_from([0.0, 1.0, 2.0])),
        duty_cycle_period=draw(st.sampled_from([50, 1000])),
        mask_behaviour=draw(st.sampled_from(["2019", "rezero_after_step"])),
        n_tasks=draw(st.integers(1, 3)), epochs=draw(st.integers(1, 2)), batch_size=draw(st.integers(8, 40)),
        lr=draw(st.sampled_from([0.1, 0.03])), momentum=momentum, nesterov=momentum > 0 and draw(st.booleans()),
        weight_decay=draw(st.sampled_from([0.0, 1e-4])), dropout=draw(st.sampled_from([0.0, 0.3, 0.5])),
        train_size=draw(st.integers(30, 90)), test_size=draw(st.integers(10, 60)))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seeds=st.lists(st.integers(0, 10_000), min_size=1, max_size=3, unique=True), params=small_protocols())
def test_every_seed_of_a_batch_is_its_sequential_run(data_dir, seeds, params):
    assert_same_runs(batched(seeds, data_dir, **params), sequential(seeds, data_dir, **params))


def test_a_batch_of_one_seed_is_the_sequential_run(data_dir):
    got, = batched([3], data_dir, **SMALL)
    expected, = sequential([3], data_dir, **SMALL)
    assert largest_difference(got, expected) == 0.0


def test_the_order_of_the_seeds_does_not_change_a_seed(data_dir):
    forward = dict(zip([0, 5, 2], batched([0, 5, 2], data_dir, **SMALL)))
    backward = dict(zip([2, 0, 5], batched([2, 0, 5], data_dir, **SMALL)))
    for seed in forward:
        assert largest_difference(forward[seed], backward[seed]) == 0.0


def test_the_same_seed_twice_gives_the_same_run_twice(data_dir):
    first, second = batched([4, 4], data_dir, **SMALL)
    assert largest_difference(first, second) == 0.0


def test_timings_are_the_batch_time_shared_by_the_seeds(data_dir):
    runs = batched([0, 1], data_dir, **SMALL)
    for arm in SMALL["arms"]:
        assert runs[0][f"{arm}_seconds"] == runs[1][f"{arm}_seconds"] > 0


def test_the_engine_finds_it_beside_the_protocol_and_sequential_runs_never_cover_it():
    from verify.executors import seed_batched_form
    from verify.runner import _imported_modules, code_version

    protocol = "implementations.sparse_synapses.protocols:permuted_mnist_mlp"
    assert seed_batched_form(protocol) is permuted_mnist_mlp_seeds
    assert seed_batched_form(protocol + "_tuned_lr") is permuted_mnist_mlp_tuned_lr_seeds
    assert seed_batched_form(protocol.replace("permuted_mnist_mlp", "split_mnist_task_incremental")) is (
        split_mnist_task_incremental_seeds)
    assert code_version(protocol) != code_version(protocol, seed_batched=True)
    import implementations.sparse_synapses.protocols as module
    from pathlib import Path
    assert "implementations.sparse_synapses.seed_batched" not in _imported_modules(
        Path(module.__file__), "implementations.sparse_synapses.protocols")


def test_parameters_are_checked_as_the_sequential_protocol_checks_them(data_dir):
    with pytest.raises(TypeError, match="hidden_width"):
        permuted_mnist_mlp_seeds(seeds=[0], device="cpu", data_dir=data_dir, hidden_width=8)
    with pytest.raises(ValueError, match="dense"):
        permuted_mnist_mlp_seeds(seeds=[0], device="cpu", data_dir=data_dir, **{**SMALL, "arms": ["sparse"]})
    with pytest.raises(ValueError, match="unknown arm"):
        permuted_mnist_mlp_seeds(seeds=[0], device="cpu", data_dir=data_dir, **{**SMALL, "arms": ["dense", "tiny"]})
    assert permuted_mnist_mlp_seeds(seeds=[], device="cpu", data_dir=data_dir, **SMALL) == []


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_every_seed_of_a_batch_is_its_sequential_run(data_dir):
    """cuBLAS picks kernels per shape and batch count, so CUDA equality is checked, not assumed."""
    params = {**SMALL, "hidden_layers": 2, "mask_behaviour": "2019"}
    assert_same_runs(batched([0, 1, 2], data_dir, "cuda", **params), sequential([0, 1, 2], data_dir, "cuda", **params))


@st.composite
def small_searches(draw) -> dict:
    """The learning-rate search at a few dozen images: grid, arms and the switches it passes on."""
    hidden_units = draw(st.sampled_from([8, 16]))
    rates = draw(st.lists(st.sampled_from([0.1, 0.03, 0.01]), min_size=1, max_size=3, unique=True))
    momentum = draw(st.sampled_from([0.0, 0.9]))
    return dict(
        arms=["dense", *draw(st.lists(st.sampled_from(ARMS[1:5]), max_size=2, unique=True))],
        learning_rates=rates, shared_lr=draw(st.sampled_from(rates)), validation_size=draw(st.integers(8, 24)),
        hidden_units=hidden_units, hidden_layers=draw(st.integers(1, 2)),
        percent_on_fc=draw(st.integers(1, 3)) / hidden_units, boost_strength=draw(st.sampled_from([0.0, 1.0])),
        duty_cycle_period=draw(st.sampled_from([50, 1000])), n_tasks=draw(st.integers(1, 3)),
        epochs=draw(st.integers(1, 2)), batch_size=draw(st.integers(8, 32)), momentum=momentum,
        nesterov=momentum > 0 and draw(st.booleans()), weight_decay=draw(st.sampled_from([0.0, 1e-4])),
        dropout=draw(st.sampled_from([0.0, 0.5])), train_size=draw(st.integers(40, 90)),
        test_size=draw(st.integers(10, 40)))


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seeds=st.lists(st.integers(0, 10_000), min_size=1, max_size=3, unique=True), params=small_searches())
def test_every_seed_of_a_batched_search_is_its_sequential_search(data_dir, seeds, params):
    seed_everything(12_345)
    got = permuted_mnist_mlp_tuned_lr_seeds(seeds=seeds, device="cpu", data_dir=data_dir, **params)
    expected = each_seed_sequentially(permuted_mnist_mlp_tuned_lr, seeds, device="cpu", data_dir=data_dir, **params)
    assert got == expected  # no timings in these outputs: every value bitwise, on one thread


def test_a_batched_search_checks_its_grid_as_the_sequential_one(data_dir):
    with pytest.raises(ValueError, match="shared_lr 0.5 must be one of the learning_rates"):
        permuted_mnist_mlp_tuned_lr_seeds(seeds=[0], device="cpu", data_dir=data_dir, learning_rates=[0.1],
                                          shared_lr=0.5)


@st.composite
def small_splits(draw) -> dict:
    """Task-incremental Split MNIST at a few images per class: heads, arms and the switches."""
    hidden_units = draw(st.sampled_from([8, 16]))
    momentum = draw(st.sampled_from([0.0, 0.9]))
    return dict(
        arms=["dense", *draw(st.lists(st.sampled_from(ARMS[1:5]), max_size=2, unique=True))],
        heads=draw(st.sampled_from(["faithful", "trained"])), hidden_units=hidden_units,
        hidden_layers=draw(st.integers(1, 2)), percent_on_fc=draw(st.integers(1, 3)) / hidden_units,
        weight_density_fc=draw(st.sampled_from([0.3, 0.5])), boost_strength=draw(st.sampled_from([0.0, 1.0])),
        mask_behaviour=draw(st.sampled_from(["2019", "rezero_after_step"])), epochs=draw(st.integers(1, 2)),
        batch_size=draw(st.integers(4, 16)), lr=draw(st.sampled_from([0.1, 0.03])), momentum=momentum,
        nesterov=momentum > 0 and draw(st.booleans()), weight_decay=draw(st.sampled_from([0.0, 1e-4])),
        dropout=draw(st.sampled_from([0.0, 0.5])), train_per_class=draw(st.integers(3, 8)),
        test_per_class=draw(st.integers(2, 6)))


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seeds=st.lists(st.integers(0, 10_000), min_size=1, max_size=3, unique=True), params=small_splits())
def test_every_seed_of_a_batched_split_is_its_sequential_run(data_dir, seeds, params):
    seed_everything(12_345)
    got = split_mnist_task_incremental_seeds(seeds=seeds, device="cpu", data_dir=data_dir, **params)
    expected = each_seed_sequentially(split_mnist_task_incremental, seeds, device="cpu", data_dir=data_dir, **params)
    assert_same_runs(got, expected)


def test_the_faithful_heads_stay_untrained_in_a_batch(data_dir):
    """The heads setting reaches the batched optimizer: faithful (heads 1.. never trained) and trained
    heads give different runs (that each equals its sequential run is the property test above)."""
    small = dict(arms=["dense"], hidden_units=16, hidden_layers=1, epochs=2, batch_size=8, train_per_class=8,
                 test_per_class=6)
    faithful = split_mnist_task_incremental_seeds(seeds=[0, 1], device="cpu", data_dir=data_dir, heads="faithful",
                                                  **small)
    trained = split_mnist_task_incremental_seeds(seeds=[0, 1], device="cpu", data_dir=data_dir, heads="trained",
                                                 **small)
    assert [run["dense_accuracy_matrix"] for run in faithful] != [run["dense_accuracy_matrix"] for run in trained]
