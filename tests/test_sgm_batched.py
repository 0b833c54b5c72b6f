"""Seed-batched SGM gradient masking (`implementations/sgm/seed_batched.py`) against the sequential protocol.

Each seed of a batched run must give what `gradient_masking_split(context=c)` gives for seed s's run
context after the engine's `c.reseed()`: every output equal, accuracies and locked percentages included (the protocol
reports no timings). On one CPU thread the two are bitwise equal; with more threads MKL may sum one
product's reduction in another order than the batched product does, so the comparisons run on one
thread. Real MNIST (and CIFAR-10 for the per-seed fallback) files; a missing one skips, naming it.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from implementations.common.seed_batching import each_seed_sequentially
from implementations.common.seeding import seed_everything
from implementations.sgm.protocols import gradient_masking_split
from implementations.sgm.seed_batched import gradient_masking_split_seeds

PROTOCOL = "implementations.sgm.protocols:gradient_masking_split"
SMALL = dict(n_tasks=2, epochs=2, batch_size=12, max_per_task=30, max_test_per_task=20)


@pytest.fixture(scope="module")
def data_dir(mnist_data_dir):
    return mnist_data_dir


@pytest.fixture(scope="module")
def cifar_dir(cifar10_data_dir):
    return cifar10_data_dir


pytestmark = pytest.mark.usefixtures("one_thread")


def sequential(seeds, data_dir, device="cpu", **params) -> list[dict]:
    """What the run engine does without batching: per seed its run context, reseeded, and one protocol call."""
    return each_seed_sequentially(gradient_masking_split, seeds, device=device, data_dir=data_dir, **params)


def batched(seeds, data_dir, device="cpu", **params) -> list[dict]:
    seed_everything(12_345)  # the global state at entry must not matter: every seed's draws are its own
    return gradient_masking_split_seeds(seeds=seeds, device=device, data_dir=data_dir, **params)


def assert_same_runs(got: list[dict], expected: list[dict]) -> None:
    assert len(got) == len(expected)
    for got_run, expected_run in zip(got, expected):
        assert list(got_run) == list(expected_run)  # the same keys, in the same order
        for key in expected_run:
            assert got_run[key] == expected_run[key], key


@st.composite
def small_protocols(draw) -> dict:
    """A few tasks of a few dozen images, small batches (last batch short or not), 1-2 epochs."""
    return dict(n_tasks=draw(st.integers(1, 3)), epochs=draw(st.integers(1, 2)), batch_size=draw(st.integers(5, 24)),
                lr=draw(st.sampled_from([1e-3, 1e-2])), lock_fraction=draw(st.sampled_from([0.0, 0.1, 0.3])),
                max_per_task=draw(st.integers(8, 40)), max_test_per_task=draw(st.integers(4, 30)))


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seeds=st.lists(st.integers(0, 10_000), min_size=1, max_size=3, unique=True), params=small_protocols())
def test_every_seed_of_a_batch_is_its_sequential_run(data_dir, seeds, params):
    assert_same_runs(batched(seeds, data_dir, **params), sequential(seeds, data_dir, **params))


def test_the_compared_runs_lock_train_and_differ_between_seeds(data_dir):
    """What the equality above is about: the mask locks parameters, training changes the accuracy and
    different seeds give different runs (so a form ignoring a seed's streams would be caught)."""
    first, second = batched([0, 1], data_dir, **SMALL)
    assert first["locked_percent"][0] > 0
    assert first["max_abs_change_locked"][-1] == 0.0  # a locked coordinate never moves (fresh Adam per task)
    assert first["untrained_accuracy"] != first["accuracy_matrix"][0]
    assert first["untrained_accuracy"] != second["untrained_accuracy"]


def test_top_k_breaks_ties_among_zero_gradients_as_the_sequential_run(data_dir):
    """Locking 30% per task soon runs out of non-zero gradients: top-k then picks among equal (zero)
    entries, locked ones among them, and which it picks decides the locked share."""
    params = {**SMALL, "n_tasks": 3, "epochs": 1, "lock_fraction": 0.3}
    got = batched([1, 7], data_dir, **params)
    assert_same_runs(got, sequential([1, 7], data_dir, **params))
    assert all(run["locked_percent"][-1] < 89 for run in got)  # fewer than 3 x 30% locked: ties were broken


def test_the_order_of_the_seeds_does_not_change_a_seed(data_dir):
    forward = dict(zip([0, 5, 2], batched([0, 5, 2], data_dir, **SMALL)))
    backward = dict(zip([2, 0, 5], batched([2, 0, 5], data_dir, **SMALL)))
    assert forward == backward


def test_the_same_seed_twice_gives_the_same_run_twice(data_dir):
    first, second = batched([4, 4], data_dir, **SMALL)
    assert first == second
    assert_same_runs([first], sequential([4], data_dir, **SMALL))


def test_a_cifar_batch_is_each_seed_run_sequentially(cifar_dir):
    """CIFAR-10 (the CNN) falls back on the sequential protocol per seed."""
    params = dict(dataset="cifar10", n_tasks=2, epochs=1, batch_size=8, max_per_task=16, max_test_per_task=8)
    assert_same_runs(batched([0, 3], cifar_dir, **params), sequential([0, 3], cifar_dir, **params))


def test_parameters_are_checked_as_the_sequential_protocol_checks_them(data_dir):
    with pytest.raises(TypeError, match="hidden"):
        gradient_masking_split_seeds(seeds=[0], device="cpu", data_dir=data_dir, hidden=8)
    with pytest.raises(KeyError, match="svhn"):
        gradient_masking_split_seeds(seeds=[0], device="cpu", data_dir=data_dir, dataset="svhn")
    assert gradient_masking_split_seeds(seeds=[], device="cpu", data_dir=data_dir, **SMALL) == []


def test_the_engine_finds_it_beside_the_protocol_and_sequential_runs_never_cover_it():
    from pathlib import Path

    import implementations.sgm.protocols as module
    from verify.executors import seed_batched_form
    from verify.runner import _imported_modules, code_version

    assert seed_batched_form(PROTOCOL) is gradient_masking_split_seeds
    assert code_version(PROTOCOL) != code_version(PROTOCOL, seed_batched=True)
    assert "implementations.sgm.seed_batched" not in _imported_modules(Path(module.__file__),
                                                                       "implementations.sgm.protocols")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_every_seed_of_a_batch_is_its_sequential_run(data_dir):
    """cuBLAS picks kernels per shape and batch count, so CUDA equality is checked, not assumed."""
    params = {**SMALL, "n_tasks": 3, "max_per_task": 300, "max_test_per_task": 100, "batch_size": 64}
    assert_same_runs(batched([0, 1, 2], data_dir, "cuda", **params), sequential([0, 1, 2], data_dir, "cuda", **params))
