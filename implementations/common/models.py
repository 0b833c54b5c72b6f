"""Small reference models shared by the methods: MLPs with one head or one head per task."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU, "elu": nn.ELU,
               "leaky_relu": nn.LeakyReLU}


def _hidden_layers(in_features: int, hidden: Sequence[int], activation: str, dropout: float) -> list[nn.Module]:
    """Linear -> activation (-> dropout) per hidden width; no Dropout module when dropout is 0."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; known: {sorted(ACTIVATIONS)}")
    layers: list[nn.Module] = []
    width = in_features
    for next_width in hidden:
        layers += [nn.Linear(width, next_width), ACTIVATIONS[activation]()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = next_width
    return layers


class MLP(nn.Module):
    """Fully connected network; inputs are flattened from dimension 1 on."""

    def __init__(self, in_features: int, hidden: Sequence[int], out_features: int, activation: str = "relu",
                 dropout: float = 0.0):
        super().__init__()
        width = hidden[-1] if hidden else in_features
        self.layers = nn.Sequential(*_hidden_layers(in_features, hidden, activation, dropout),
                                    nn.Linear(width, out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x.flatten(1))


class TaskConditioned(nn.Module):
    """Base of models whose forward takes the task id: `forward(x, task_id)`."""


class MultiHeadMLP(TaskConditioned):
    """A shared MLP trunk and one linear head per task; forward(x, task_id) uses that task's head."""

    def __init__(self, in_features: int, hidden: Sequence[int], n_heads: int, head_out: int, activation: str = "relu",
                 dropout: float = 0.0):
        super().__init__()
        width = hidden[-1] if hidden else in_features
        self.trunk = nn.Sequential(*_hidden_layers(in_features, hidden, activation, dropout))
        self.heads = nn.ModuleList(nn.Linear(width, head_out) for _ in range(n_heads))

    def forward(self, x: torch.Tensor, task_id: int) -> torch.Tensor:
        return self.heads[task_id](self.trunk(x.flatten(1)))


def forward_on_task(model: nn.Module, x: torch.Tensor, task_id: int | None) -> torch.Tensor:
    """The model's output for inputs of task `task_id`: passes the id only to TaskConditioned models."""
    if not isinstance(model, TaskConditioned):
        return model(x)
    if task_id is None:
        raise ValueError(f"{type(model).__name__} needs the task id")
    return model(x, task_id)


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
