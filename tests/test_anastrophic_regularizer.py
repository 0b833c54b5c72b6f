"""Anastrophic regulariser (spec §1), its baselines (EWC, L2 anchoring) and the read instrumentation."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from implementations.common.data_access import ReadLog, watch
from implementations.anastrophic.model import SimpleCNN, permute_hidden_units
from implementations.anastrophic.protocols import coherence_term, two_task_split_mnist
from implementations.anastrophic.regularizer import (
    AnastrophicRegularization,
    beta_proxy,
    regularised_names,
    spectral_coherence,
)
from implementations.baselines.ewc import EWC, empirical_fisher
from implementations.baselines.l2 import L2Anchor
from implementations.common.datasets import resolve_data_dir
from implementations.common.models import MLP
from implementations.common.run_context import RunContext
from implementations.common.seeding import torch_generator
from implementations.common.streams import Task
from implementations.common.training import Strategy, train_task

shapes = st.lists(st.integers(1, 7), min_size=1, max_size=4)


def random_tensor(shape: list[int], seed: int, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@settings(max_examples=40, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**31 - 1))
def test_beta_is_half_the_squared_weight_distance_and_its_gradient_the_difference(shape, seed):
    weight = random_tensor(shape, seed).requires_grad_()
    previous = random_tensor(shape, seed + 1)
    beta = beta_proxy(weight, previous)
    beta.backward()
    half_squared = 0.5 * ((weight.detach() - previous) ** 2).sum()
    torch.testing.assert_close(beta.detach(), half_squared, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(weight.grad, weight.detach() - previous, rtol=1e-9, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**31 - 1), scale=st.floats(0.01, 100.0))
def test_coherence_matches_its_closed_form_lies_in_unit_interval_and_ignores_scale(shape, seed, scale):
    weight = random_tensor(shape, seed)
    spectrum = torch.fft.fft(weight.reshape(-1))
    closed_form = (spectrum.abs() * spectrum).sum().abs() / (spectrum.abs() ** 2).sum()
    phi = spectral_coherence(weight)
    # The closed form and scale invariance hold up to the 1e-8 added to the power sum (spec §1.2).
    power = float((spectrum.abs() ** 2).sum())
    epsilon_effect = 1e-8 / min(power, power * scale ** 2)
    assert abs(float(phi) - float(closed_form)) <= 2 * epsilon_effect + 1e-9
    assert 0.0 <= float(phi) <= 1.0 + 1e-12
    assert abs(float(spectral_coherence(scale * weight)) - float(phi)) <= 4 * epsilon_effect + 1e-9


@pytest.mark.parametrize("length", [5, 16, 33])
def test_coherence_is_one_for_a_constant_and_zero_for_a_shifted_delta(length):
    assert float(spectral_coherence(torch.ones(length, dtype=torch.float64))) == pytest.approx(1.0, abs=1e-6)
    delta = torch.zeros(length, dtype=torch.float64)
    delta[1] = 1.0
    assert float(spectral_coherence(delta)) == pytest.approx(0.0, abs=1e-9)


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), eta=st.floats(0.1, 10.0))
def test_beta_part_equals_l2_anchoring_with_coefficient_eta_on_the_weights(seed, eta):
    torch.manual_seed(seed)
    model = SimpleCNN().double()
    anastrophic = AnastrophicRegularization(coherence_weight=0.0, beta_weight=eta)
    l2 = L2Anchor(eta, regularised_names(model))
    anastrophic.after_task(model, None)
    l2.after_task(model, None)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    coherence_part, beta_part = anastrophic.terms(model)
    assert float(coherence_part.detach()) == 0.0
    torch.testing.assert_close(beta_part, l2.penalty(model), rtol=1e-9, atol=1e-12)


def test_function_preserving_permutation_changes_the_coherence_term():
    torch.manual_seed(0)
    model = SimpleCNN()
    permuted = copy.deepcopy(model)
    permute_hidden_units(permuted, torch.randperm(128, generator=torch.Generator().manual_seed(1)))
    x = torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(permuted(x), model(x), rtol=0, atol=1e-5)
    assert abs(coherence_term(permuted) - coherence_term(model)) > 1e-3


def synthetic_image_task(task_id: int, classes: tuple[int, ...], n: int = 24, seed: int = 0) -> Task:
    generator = torch.Generator().manual_seed(seed + task_id)
    x = torch.randn(n, 1, 28, 28, generator=generator)
    y = torch.tensor(classes)[torch.randint(len(classes), (n,), generator=generator)]
    return Task(task_id, classes, x, y, x[:8].clone(), y[:8].clone())


def test_regularizer_is_off_during_the_first_task_and_on_after_it():
    torch.manual_seed(0)
    model, task = SimpleCNN(), synthetic_image_task(0, (0, 1, 2, 3, 4))
    strategy = AnastrophicRegularization()
    x, y = task.x_train[:8], task.y_train[:8]
    torch.testing.assert_close(strategy.loss(model, x, y, task), F.cross_entropy(model(x), y))
    strategy.after_task(model, task)
    coherence_part, beta_part = (term.detach() for term in strategy.terms(model))
    assert float(beta_part) == 0.0 and 3.5 < float(coherence_part) < 4.0  # 4 tensors, Phi near 0 (spec §1.4)
    assert strategy.stored_floats() == 206_922 == sum(p.numel() for p in model.parameters())


class ReplaysOldData(Strategy):
    """A strategy that does read old data, to show the counter catches it."""

    def __init__(self, old: Task):
        self.old = old

    def loss(self, model, x, y, task):
        return super().loss(model, x, y, task) + F.cross_entropy(model(self.old.x_train[:4]), self.old.y_train[:4])


@pytest.mark.parametrize("make_strategy, reads_old", [
    (lambda old: AnastrophicRegularization(), False),
    (lambda old: L2Anchor(3.0), False),
    (lambda old: ReplaysOldData(old), True),
])
def test_read_counter_tells_data_free_strategies_from_replay(make_strategy, reads_old):
    torch.manual_seed(0)
    model = MLP(784, [16], 10)
    task_a, task_b = synthetic_image_task(0, (0, 1, 2, 3, 4)), synthetic_image_task(1, (5, 6, 7, 8, 9))
    log = ReadLog()
    task_a.x_train, task_a.y_train = watch(task_a.x_train, log), watch(task_a.y_train, log)
    strategy = make_strategy(task_a)
    strategy.after_task(model, task_a)
    train_task(model, strategy, task_b, epochs=1, batch_size=8, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
               generator=torch_generator(0))
    assert (log.reads > 0) == reads_old


def test_empirical_fisher_matches_a_per_sample_loop():
    torch.manual_seed(0)
    model = MLP(784, [6], 10)
    task = synthetic_image_task(0, (0, 1, 2), n=9)
    fisher = empirical_fisher(model, task, None, batch_size=4)
    expected = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    for x, y in zip(task.x_train, task.y_train):
        model.zero_grad()
        F.cross_entropy(model(x.unsqueeze(0)), y.unsqueeze(0)).backward()
        for name, p in model.named_parameters():
            expected[name] += p.grad ** 2 / len(task.x_train)
    for name in expected:
        torch.testing.assert_close(fisher[name], expected[name], rtol=1e-4, atol=1e-8)


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), strength=st.floats(0.1, 100.0))
def test_ewc_with_unit_fisher_is_l2_anchoring_and_zero_at_its_anchor(seed, strength):
    torch.manual_seed(seed)
    model = MLP(784, [5], 10)
    ewc, l2 = EWC(strength), L2Anchor(strength)
    ewc.after_task(model, synthetic_image_task(0, (0, 1), n=4, seed=seed))
    l2.after_task(model, None)
    with torch.no_grad():
        assert float(ewc.penalty(model)) == 0.0 and float(l2.penalty(model)) == 0.0
        for fisher in ewc.learned[0].fisher.values():
            fisher.fill_(1.0)
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter))
        torch.testing.assert_close(ewc.penalty(model), l2.penalty(model), rtol=1e-6, atol=0)
        assert float(ewc.with_strength(2 * strength).penalty(model)) == pytest.approx(2 * float(ewc.penalty(model)))


@pytest.mark.dataset("mnist")
def test_two_task_protocol_tiny_run_is_data_free_and_reports_every_method():
    data_dir = resolve_data_dir()
    if not (data_dir / "mnist" / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"MNIST not in {data_dir}")
    torch.manual_seed(0)
    outputs = two_task_split_mnist(context=RunContext(0, "cpu", data_dir), epochs=1, train_per_class=6,
                                   test_per_class=3, ewc_strengths=(1.0,), fisher_samples=4)
    methods = ["finetune", "anastrophic", "anastrophic_no_beta", "l2", "ewc_0"]
    assert all(outputs[f"{method}_task_a_reads_during_task_b"] == 0 for method in methods)
    assert outputs["task_a_reads_while_training_task_a"] > 0 and outputs["ewc_fisher_task_a_reads"] > 0
    assert all(len(outputs[f"{method}_accuracy_matrix"]) == 2 for method in methods)
    assert outputs["anastrophic_beta_identity_relative_error"] < 1e-4
    assert outputs["anastrophic_stored_floats"] == 206_922 and outputs["l2_stored_floats"] == 206_736
    # EWC keeps a Fisher and an anchor per learned task: after Task B (train_task's after_task) two of each.
    assert outputs["ewc_0_stored_floats"] == 4 * 206_736
