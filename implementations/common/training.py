"""The one training loop, the strategy hooks a continual-learning method overrides, and the runner
that compares several methods on one stream."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .evaluation import accuracy_row, default_forward
from .seeding import seed_everything, torch_generator
from .streams import Task

# What the loop hands to `Strategy.training_step`: (x, y) from `shuffled_batches`; a strategy whose
# batches come from elsewhere (generated samples, say) defines its own tuple and its own training_step.
Batch = tuple


class Strategy:
    """Plain fine-tuning; a method overrides the hooks it needs (one file per method in baselines/)."""

    def before_task(self, model: nn.Module, task: Task) -> None:
        """Before the first step on `task` (e.g. grow a head, snapshot weights)."""

    def forward(self, model: nn.Module, x: torch.Tensor, task: Task | None) -> torch.Tensor:
        """Model outputs for training and evaluation; the task id reaches TaskConditioned models only."""
        return default_forward(model, x, task)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: Task) -> torch.Tensor:
        """Training loss of one batch (e.g. add a regulariser or replayed samples here)."""
        return F.cross_entropy(self.forward(model, x, task), y)

    def after_backward(self, model: nn.Module, task: Task) -> None:
        """Gradients are computed and not yet applied (e.g. mask or project them)."""

    def after_step(self, model: nn.Module, task: Task) -> None:
        """The optimizer has updated the weights (e.g. re-apply a weight mask)."""

    def after_task(self, model: nn.Module, task: Task) -> None:
        """Training on `task` is over (e.g. compute importances, freeze, prune)."""

    def training_step(self, model: nn.Module, batch: Batch, task: Task | None,
                      optimizer: torch.optim.Optimizer) -> None:
        """One update from one batch. Override it whole for a method that updates several optimizers
        per batch (e.g. a learner and a GAN); the hooks above are called from here.

        The gradients stay in `.grad` after the step (zeroed before the backward pass, not after),
        so after_task can read the last batch's gradients.
        """
        x, y = batch
        loss = self.loss(model, x, y, task)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.after_backward(model, task)
        optimizer.step()
        self.after_step(model, task)


def shuffled_batches(task: Task, *, epochs: int, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
    """Each epoch visits every training sample once, in an order drawn from `generator`.

    A batch is an index slice of a random permutation (the last batch of an epoch may be smaller);
    the data stay on their device. The permutation is drawn on the generator's device (CPU for
    `torch_generator`), so CPU and CUDA runs see the same batches. `torch.default_generator` gives
    a script's `torch.randperm(n)` on the global generator. Each epoch's permutation is drawn
    lazily, when the epoch starts: a strategy drawing from the same generator during the epoch
    (GAN noise) gets the draws in the order the original made them.
    """
    n_samples = len(task.x_train)
    for _ in range(epochs):
        order = torch.randperm(n_samples, generator=generator, device=generator.device).to(task.x_train.device)
        for start in range(0, n_samples, batch_size):
            batch = order[start:start + batch_size]
            yield task.x_train[batch], task.y_train[batch]


def train_steps(model: nn.Module, strategy: Strategy, task: Task | None, batches: Iterable[Batch],
                optimizer: torch.optim.Optimizer) -> None:
    """The loop: one `strategy.training_step` per batch. `task` is None where the batches belong to no task."""
    for batch in batches:
        strategy.training_step(model, batch, task, optimizer)


def train_task(model: nn.Module, strategy: Strategy, task: Task, *, epochs: int, batch_size: int,
               optimizer: torch.optim.Optimizer, generator: torch.Generator) -> None:
    """Train on one task: its hooks around `epochs` passes of `shuffled_batches` over its training data."""
    strategy.before_task(model, task)
    model.train()
    train_steps(model, strategy, task, shuffled_batches(task, epochs=epochs, batch_size=batch_size,
                                                        generator=generator), optimizer)
    strategy.after_task(model, task)


MakeOptimizer = Callable[[nn.Module, int], torch.optim.Optimizer]


def run_stream(model: nn.Module, strategy: Strategy, tasks: Sequence[Task], *, epochs: int, batch_size: int,
               make_optimizer: MakeOptimizer, seed: int, device: str | torch.device,
               evaluate_untrained: bool = True, optimizer_per_task: bool = True) -> dict:
    """Train on the tasks in order, testing on every task after each one.

    make_optimizer(model, task_id): called before each task (optimizer_per_task=True, fresh state
    per task), or once with the first task's id and kept across tasks.
    Returns {"accuracy_matrix": R, "untrained_accuracy": b}: R[i][j] = test accuracy on task j
    after training task i (so R[i][i] is the accuracy right after learning task i), b[j] = test
    accuracy of the untrained model (only with evaluate_untrained).
    """
    model.to(device)
    generator = torch_generator(seed)
    results: dict = {}
    if evaluate_untrained:
        results["untrained_accuracy"] = accuracy_row(model, tasks, strategy.forward)
    optimizer = None if optimizer_per_task else make_optimizer(model, tasks[0].task_id)
    accuracy_matrix = []
    for task in tasks:
        if optimizer_per_task:
            optimizer = make_optimizer(model, task.task_id)
        train_task(model, strategy, task, epochs=epochs, batch_size=batch_size, optimizer=optimizer,
                   generator=generator)
        accuracy_matrix.append(accuracy_row(model, tasks, strategy.forward))
    results["accuracy_matrix"] = accuracy_matrix
    return results


@dataclass
class Method:
    """One contender of a comparison: what run_stream trains, and the settings it does not share."""

    model: nn.Module
    strategy: Strategy
    make_optimizer: MakeOptimizer
    batch_size: int | None = None  # None: the comparison's batch size
    optimizer_per_task: bool = True


@dataclass
class MethodResult:
    """A compared method after the stream: its accuracy matrix, wall time, and the trained method."""

    accuracy_matrix: list[list[float]]
    seconds: float
    method: Method


def compare_methods(methods: Mapping[str, Callable[[], Method]], tasks: Sequence[Task], *, epochs: int,
                    batch_size: int, seed: int, device: str | torch.device) -> dict[str, MethodResult]:
    """Train every method on the same stream with run_stream, each from the same random state.

    Before each method is built, every generator is re-seeded from `seed` (as the runner seeded
    them before the protocol), so a method's initial weights, batch order and numbers do not
    depend on which methods ran before it. `seconds` covers building and training the method.
    """
    results = {}
    for name, build in methods.items():
        seed_everything(seed)
        started = time.perf_counter()
        method = build()
        stream = run_stream(method.model, method.strategy, tasks, epochs=epochs,
                            batch_size=batch_size if method.batch_size is None else method.batch_size,
                            make_optimizer=method.make_optimizer, seed=seed, device=device,
                            evaluate_untrained=False, optimizer_per_task=method.optimizer_per_task)
        results[name] = MethodResult(stream["accuracy_matrix"], time.perf_counter() - started, method)
    return results


def comparison_outputs(results: Mapping[str, MethodResult]) -> dict:
    """The outputs every comparison reports: `<name>_accuracy_matrix` and `<name>_seconds` per method."""
    outputs = {}
    for name, result in results.items():
        outputs[f"{name}_accuracy_matrix"] = result.accuracy_matrix
        outputs[f"{name}_seconds"] = result.seconds
    return outputs
