"""The training loop, evaluation, models and seeding of implementations.common (synthetic tensors)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from implementations.baselines.finetune import FineTuning
from implementations.common.evaluation import accuracy
from implementations.common.models import MLP, MultiHeadMLP, count_parameters, forward_on_task
from implementations.common.seeding import seed_everything, torch_generator
from implementations.common.streams import Task
from implementations.common.training import (Method, Strategy, compare_methods, comparison_outputs, run_stream,
                                             train_steps, train_task)


def sign_label(x: torch.Tensor, task_id: int, classes: tuple[int, int]) -> torch.Tensor:
    """A learnable rule per task: the sign of feature `task_id` picks one of the task's two classes."""
    return torch.tensor(classes)[(x[:, task_id] > 0).long()]


def synthetic_tasks(n_tasks: int = 3, n_train: int = 37, n_test: int = 11, features: int = 6) -> list[Task]:
    generator = torch.Generator().manual_seed(123)
    tasks = []
    for task_id in range(n_tasks):
        classes = (2 * task_id, 2 * task_id + 1)
        x_train = torch.randn(n_train, features, generator=generator)
        x_test = torch.randn(n_test, features, generator=generator)
        tasks.append(Task(task_id, classes, x_train, sign_label(x_train, task_id, classes),
                          x_test, sign_label(x_test, task_id, classes)))
    return tasks


def sgd(model, task_id):
    return torch.optim.SGD(model.parameters(), lr=0.1)


def train_stream(seed: int, tasks: list[Task], **overrides):
    seed_everything(seed)
    model = MLP(6, [8], 6)
    arguments = dict(epochs=2, batch_size=8, make_optimizer=sgd, seed=seed, device="cpu")
    return model, run_stream(model, FineTuning(), tasks, **{**arguments, **overrides})


def test_run_stream_returns_a_task_by_task_accuracy_matrix():
    tasks = synthetic_tasks()
    _, results = train_stream(0, tasks)
    matrix = results["accuracy_matrix"]
    assert len(matrix) == 3 and all(len(row) == 3 for row in matrix)
    assert len(results["untrained_accuracy"]) == 3
    assert all(0.0 <= value <= 1.0 for row in matrix for value in row)
    assert all(value * 11 == round(value * 11) for row in matrix for value in row)  # fractions of 11 test samples
    _, without_untrained = train_stream(0, tasks, evaluate_untrained=False)
    assert "untrained_accuracy" not in without_untrained


def test_same_seed_gives_identical_results_and_parameters():
    tasks = synthetic_tasks()
    first_model, first = train_stream(4, tasks)
    second_model, second = train_stream(4, tasks)
    assert first == second
    for (name, a), (_, b) in zip(first_model.state_dict().items(), second_model.state_dict().items()):
        assert torch.equal(a, b), name
    third_model, _ = train_stream(5, tasks)
    assert not torch.equal(first_model.layers[0].weight, third_model.layers[0].weight)


class RecordingStrategy(Strategy):
    def __init__(self):
        self.batches: list[list[int]] = []
        self.calls: list[str] = []

    def before_task(self, model, task):
        self.calls.append("before_task")

    def loss(self, model, x, y, task):
        self.batches.append(x[:, 0].long().tolist())  # feature 0 holds the sample's index
        self.calls.append("loss")
        return super().loss(model, x, y, task)

    def after_backward(self, model, task):
        assert all(p.grad is not None for p in model.parameters())
        self.calls.append("after_backward")

    def after_step(self, model, task):
        self.calls.append("after_step")

    def after_task(self, model, task):
        self.calls.append("after_task")


def test_each_epoch_visits_every_sample_exactly_once():
    n_samples, batch_size, epochs = 23, 5, 3
    x = torch.cat([torch.arange(n_samples, dtype=torch.float32)[:, None], torch.randn(n_samples, 3)], dim=1)
    task = Task(0, (0, 1), x, torch.zeros(n_samples, dtype=torch.long), x, torch.zeros(n_samples, dtype=torch.long))
    model = MLP(4, [], 2)
    strategy = RecordingStrategy()
    train_task(model, strategy, task, epochs=epochs, batch_size=batch_size,
               optimizer=torch.optim.SGD(model.parameters(), lr=0.0), generator=torch_generator(0))
    batches_per_epoch = -(-n_samples // batch_size)
    assert [len(batch) for batch in strategy.batches] == ([5, 5, 5, 5, 3] * epochs)
    epochs_seen = [sum(strategy.batches[e * batches_per_epoch:(e + 1) * batches_per_epoch], [])
                   for e in range(epochs)]
    for seen in epochs_seen:
        assert sorted(seen) == list(range(n_samples))
    assert epochs_seen[0] != epochs_seen[1]  # reshuffled every epoch
    step = ["loss", "after_backward", "after_step"]
    assert strategy.calls == ["before_task"] + step * (batches_per_epoch * epochs) + ["after_task"]


def test_optimizer_is_made_per_task_or_once():
    tasks = synthetic_tasks()
    made = []

    def make_optimizer(model, task_id):
        made.append(task_id)
        return torch.optim.Adam(model.parameters(), lr=0.01)

    train_stream(0, tasks, make_optimizer=make_optimizer)
    assert made == [0, 1, 2]
    made.clear()
    train_stream(0, tasks, make_optimizer=make_optimizer, optimizer_per_task=False)
    assert made == [0]


def test_multi_head_models_get_the_task_id():
    tasks = [Task(t.task_id, t.classes, t.x_train, t.y_train % 2, t.x_test, t.y_test % 2, "local")
             for t in synthetic_tasks()]
    seed_everything(0)
    model = MultiHeadMLP(6, [8], n_heads=3, head_out=2)
    results = run_stream(model, FineTuning(), tasks, epochs=20, batch_size=8, make_optimizer=sgd, seed=0, device="cpu")
    assert min(results["accuracy_matrix"][-1]) > 0.5
    with pytest.raises(ValueError, match="needs the task id"):
        forward_on_task(model, tasks[0].x_test, None)
    assert torch.equal(forward_on_task(model, tasks[1].x_test, 1), model.heads[1](model.trunk(tasks[1].x_test)))


def test_accuracy_evaluates_in_eval_mode_and_restores_every_module_mode():
    model = MLP(6, [8], 6, dropout=0.5)
    model.layers[2].eval()  # a mixed state must come back as it was
    x, y = torch.randn(50, 6), torch.randint(0, 6, (50,))
    first = accuracy(model, x, y, batch_size=7)
    assert first == accuracy(model, x, y, batch_size=50)  # no dropout noise: eval mode
    assert first == (model.eval()(x).argmax(1) == y).sum().item() / 50
    model.train()
    model.layers[2].eval()
    accuracy(model, x, y)
    assert model.training and model.layers[0].training and not model.layers[2].training


def test_models_and_parameter_counts():
    model = MLP(784, [400, 400], 10)
    assert count_parameters(model) == 784 * 400 + 400 + 400 * 400 + 400 + 400 * 10 + 10
    model.layers[0].weight.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == count_parameters(model) - 784 * 400
    assert MLP(4, [3], 2)(torch.zeros(5, 2, 2)).shape == (5, 2)  # inputs are flattened
    heads = MultiHeadMLP(4, [3], n_heads=2, head_out=5)
    assert count_parameters(heads) == 4 * 3 + 3 + 2 * (3 * 5 + 5)
    with pytest.raises(ValueError):
        MLP(4, [3], 2, activation="swish")


def test_seed_everything_seeds_every_source():
    draws = []
    for _ in range(2):
        seed_everything(9)
        draws.append((random.random(), np.random.rand(), torch.rand(1).item()))
    assert draws[0] == draws[1]
    assert torch.are_deterministic_algorithms_enabled()
    a, b = torch_generator(3), torch_generator(3)
    assert torch.equal(torch.randperm(10, generator=a), torch.randperm(10, generator=b))


class TwoOptimizerStrategy(Strategy):
    """A custom training_step: the given optimizer steps the model, a second one a separate module."""

    def __init__(self, other: torch.nn.Module):
        self.other = other
        self.other_optimizer = torch.optim.SGD(other.parameters(), lr=0.1)
        self.calls: list[str] = []

    def before_task(self, model, task):
        self.calls.append("before_task")

    def training_step(self, model, batch, task, optimizer):
        super().training_step(model, batch, task, optimizer)
        x, _ = batch
        self.other_optimizer.zero_grad()
        self.other(x).square().mean().backward()
        self.other_optimizer.step()
        self.calls.append("training_step")

    def after_task(self, model, task):
        self.calls.append("after_task")


def test_a_custom_training_step_updates_several_optimizers_between_the_task_hooks():
    task = synthetic_tasks(n_tasks=1)[0]
    torch.manual_seed(0)
    model, other = MLP(6, [], 6), torch.nn.Linear(6, 1)
    model_before, other_before = model.layers[0].weight.clone(), other.weight.clone()
    strategy = TwoOptimizerStrategy(other)
    train_task(model, strategy, task, epochs=2, batch_size=10, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
               generator=torch_generator(0))
    assert strategy.calls == ["before_task"] + ["training_step"] * (2 * 4) + ["after_task"]  # 37 samples: 4 batches
    assert not torch.equal(model.layers[0].weight, model_before)
    assert not torch.equal(other.weight, other_before)


def test_batch_order_is_drawn_lazily_so_draws_inside_an_epoch_come_in_order():
    """Each epoch's permutation is drawn when the epoch starts: a step drawing from the same generator
    (GAN noise) sees the generator in the state a hand-written loop would leave it in."""
    task = synthetic_tasks(n_tasks=1, n_train=10)[0]

    class NoiseDrawing(Strategy):
        def __init__(self, generator):
            self.generator, self.noise = generator, []

        def training_step(self, model, batch, task, optimizer):
            self.noise.append(torch.rand(1, generator=self.generator).item())

    generator = torch_generator(7)
    strategy = NoiseDrawing(generator)
    train_task(MLP(6, [], 6), strategy, task, epochs=2, batch_size=5, optimizer=None, generator=generator)
    by_hand = torch_generator(7)
    expected = []
    for _ in range(2):
        torch.randperm(10, generator=by_hand)
        expected += [torch.rand(1, generator=by_hand).item() for _ in range(2)]
    assert strategy.noise == expected


def test_the_global_generator_gives_a_scripts_plain_randperm():
    task = synthetic_tasks(n_tasks=1, n_train=12)[0]
    seen = []

    class Recording(Strategy):
        def training_step(self, model, batch, task, optimizer):
            seen.append(batch[0])

    model = MLP(6, [], 6)
    torch.manual_seed(3)
    train_task(model, Recording(), task, epochs=1, batch_size=12, optimizer=None, generator=torch.default_generator)
    torch.manual_seed(3)
    assert torch.equal(seen[0], task.x_train[torch.randperm(12)])


def test_train_steps_runs_given_batches_without_task_hooks():
    model = MLP(6, [], 2)
    strategy = RecordingStrategy()
    x = torch.cat([torch.arange(4, dtype=torch.float32)[:, None], torch.randn(4, 5)], dim=1)
    batches = [(x[:2], torch.zeros(2, dtype=torch.long)), (x[2:], torch.ones(2, dtype=torch.long))]
    train_steps(model, strategy, None, batches, torch.optim.SGD(model.parameters(), lr=0.1))
    assert strategy.batches == [[0, 1], [2, 3]]
    assert strategy.calls == ["loss", "after_backward", "after_step"] * 2


def test_the_last_batchs_gradients_stay_for_after_task():
    task = synthetic_tasks(n_tasks=1)[0]
    model = MLP(6, [], 6)

    class ReadsGradients(Strategy):
        def after_task(self, model, task):
            self.gradients = [p.grad for p in model.parameters()]

    strategy = ReadsGradients()
    train_task(model, strategy, task, epochs=1, batch_size=8, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
               generator=torch_generator(0))
    assert all(g is not None and g.abs().sum() > 0 for g in strategy.gradients)


def _method(hidden: int) -> Method:
    return Method(MLP(6, [hidden], 6), FineTuning(), sgd)


def test_compare_methods_reseeds_before_each_method():
    tasks = synthetic_tasks()
    options = dict(epochs=2, batch_size=8, seed=4, device="cpu")
    alone = compare_methods({"small": lambda: _method(8)}, tasks, **options)
    torch.rand(5)  # whatever ran before must not matter
    both = compare_methods({"large": lambda: _method(16), "small": lambda: _method(8)}, tasks, **options)
    assert list(both) == ["large", "small"]
    assert both["small"].accuracy_matrix == alone["small"].accuracy_matrix
    for a, b in zip(both["small"].method.model.parameters(), alone["small"].method.model.parameters()):
        assert torch.equal(a, b)
    _, by_hand = train_stream(4, tasks, evaluate_untrained=False)  # seed, build, run_stream: the same run
    assert both["small"].accuracy_matrix == by_hand["accuracy_matrix"]
    assert all(result.seconds > 0 for result in both.values())
    outputs = comparison_outputs(both)
    assert set(outputs) == {"large_accuracy_matrix", "large_seconds", "small_accuracy_matrix", "small_seconds"}


def test_compare_methods_uses_a_methods_own_batch_size_and_optimizer_lifetime():
    tasks = synthetic_tasks()
    made = []

    def counting(model, task_id):
        made.append(task_id)
        return sgd(model, task_id)

    def persistent() -> Method:
        return Method(MLP(6, [8], 6), FineTuning(), counting, batch_size=37, optimizer_per_task=False)

    class CountSteps(FineTuning):
        steps = 0

        def after_step(self, model, task):
            CountSteps.steps += 1

    compare_methods({"persistent": persistent, "counted": lambda: Method(MLP(6, [8], 6), CountSteps(), sgd)},
                    tasks, epochs=1, batch_size=8, seed=0, device="cpu")
    assert made == [0]
    assert CountSteps.steps == 3 * 5  # 3 tasks of 37 samples in batches of 8
