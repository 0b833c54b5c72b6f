"""Seed-batched DTG-MA table (`implementations/dtgma/seed_batched.py`) against the sequential protocol.

Each seed of a batched run must give what `baseline_table(context=c)` gives for seed s's run context
after the engine's `c.reseed()`: every output equal but the wall times, bitwise on one CPU thread (the DTG-MA
method's dropout replayed from each seed's own generator, its LayerNorms the seed's own). Real MNIST and
Omniglot files; a missing one skips, naming it.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from implementations.common.seed_batching import each_seed_sequentially
from implementations.common.seeding import seed_everything
from implementations.dtgma import seed_batched
from implementations.dtgma.protocols import baseline_table

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data_dir(mnist_data_dir):
    return mnist_data_dir


def sequential(seeds, data_dir, device="cpu", **params) -> list[dict]:
    return each_seed_sequentially(baseline_table, seeds, device=device, data_dir=data_dir, **params)


def batched(seeds, data_dir, device="cpu", **params) -> list[dict]:
    seed_everything(12_345)  # the global state at entry must not matter: every seed's draws are its own
    return seed_batched.baseline_table_seeds(seeds=seeds, device=device, data_dir=data_dir, **params)


def assert_same_runs(got: list[dict], expected: list[dict]) -> None:
    assert len(got) == len(expected)
    for got_run, expected_run in zip(got, expected):
        assert list(got_run) == list(expected_run)  # the same keys, in the same order
        for key in expected_run:
            if not key.endswith("_seconds"):
                assert got_run[key] == expected_run[key], key


@st.composite
def small_tables(draw) -> dict:
    """A few dozen images per task, small batches (the last one short or not), 1-2 epochs."""
    per_class = draw(st.integers(4, 20))
    return dict(epochs=draw(st.integers(1, 2)), batch_size=draw(st.integers(3, 16)),
                lr=draw(st.sampled_from([1e-3, 1e-2])),
                methods=draw(st.sampled_from([("dtgma",), ("dtgma", "finetune"), ("lora", "adapter"), ("derpp",),
                                               ("finetune", "dtgma", "ewc", "adapter", "lora", "derpp")])),
                stream_options={"train_per_class": per_class, "test_per_class": draw(st.integers(2, 12))})


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seeds=st.lists(st.integers(0, 10_000), min_size=1, max_size=3, unique=True), params=small_tables())
@example(seeds=[0, 7], params=dict(epochs=2, batch_size=5, lr=1e-2, methods=("lora", "adapter", "dtgma", "derpp"),
                                   stream_options={"train_per_class": 12, "test_per_class": 30}))
@example(seeds=[2, 5], params=dict(epochs=1, batch_size=64, lr=1e-3, methods=("derpp",),  # DER++'s ring wraps
                                   stream_options={"train_per_class": 150, "test_per_class": 10}))
def test_every_seed_of_a_batch_is_its_sequential_run(data_dir, seeds, params):
    assert_same_runs(batched(seeds, data_dir, **params), sequential(seeds, data_dir, **params))


def test_a_table_of_methods_not_batched_runs_seed_by_seed(data_dir):
    params = dict(epochs=1, methods=("finetune",), stream_options={"train_per_class": 5, "test_per_class": 3})
    assert_same_runs(batched([3, 1], data_dir, **params), sequential([3, 1], data_dir, **params))


def test_the_dropout_replay_is_what_makes_seeds_equal(data_dir, monkeypatch):
    """Drawing every seed's dropout from one shared stream (the obvious batched shortcut) must be caught."""
    from implementations.common import seed_batching

    shared = {}
    original = seed_batching.DropoutStream.__init__

    def one_stream_for_all(self, device):
        original(self, device)
        self.state = shared.setdefault("state", self.state)

    monkeypatch.setattr(seed_batching.DropoutStream, "__init__", one_stream_for_all)
    params = dict(epochs=1, batch_size=4, lr=1e-2, methods=("dtgma",),
                  stream_options={"train_per_class": 16, "test_per_class": 50})
    got, expected = batched([0, 1], data_dir, **params), sequential([0, 1], data_dir, **params)
    assert got[0]["dtgma_accuracy_matrix"] == expected[0]["dtgma_accuracy_matrix"]  # seed 0's own stream
    assert got[1]["dtgma_accuracy_matrix"] != expected[1]["dtgma_accuracy_matrix"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_every_seed_of_a_batch_is_its_sequential_run(data_dir):
    """cuBLAS picks kernels per shape and batch count, and the dropout replay relies on the fused CUDA
    kernel's offsets: CUDA equality is checked, not assumed."""
    params = dict(epochs=2, methods=("dtgma", "lora", "adapter", "derpp"),
                  stream_options={"train_per_class": 150, "test_per_class": 100})
    assert_same_runs(batched([0, 1, 2], data_dir, "cuda", **params), sequential([0, 1, 2], data_dir, "cuda", **params))
