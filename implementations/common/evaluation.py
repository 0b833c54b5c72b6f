"""Accuracy of a model on a task's test set, and a row of the accuracy matrix."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from .models import forward_on_task
from .streams import Task

Forward = Callable[[nn.Module, torch.Tensor, "Task | None"], torch.Tensor]


def default_forward(model: nn.Module, x: torch.Tensor, task: Task | None) -> torch.Tensor:
    return forward_on_task(model, x, None if task is None else task.task_id)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: Task | None = None, batch_size: int = 1024,
             forward: Forward = default_forward) -> float:
    """Fraction of `x` whose arg-max output equals `y`, in eval mode; every module's mode is restored after."""
    if len(x) == 0:
        raise ValueError("accuracy of an empty set is undefined")
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        correct = torch.zeros((), dtype=torch.int64, device=y.device)
        for start in range(0, len(x), batch_size):
            outputs = forward(model, x[start:start + batch_size], task)
            correct += (outputs.argmax(dim=1) == y[start:start + batch_size]).sum()
    finally:
        for module, mode in modes:
            module.training = mode
    return correct.item() / len(x)


def accuracy_row(model: nn.Module, tasks: Sequence[Task], forward: Forward = default_forward,
                 batch_size: int = 1024) -> list[float]:
    """Test accuracy on every task, each evaluated as its own task (task id given where the model takes it)."""
    return [accuracy(model, task.x_test, task.y_test, task, batch_size, forward) for task in tasks]
