"""The one parameter-counting rule (implementations/common/parameter_counts.py) on tiny models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from implementations.common.models import TaskConditioned
from implementations.common.parameter_counts import (parameter_count_outputs, reported_parameter_count,
                                                     trained_parameter_count)
from implementations.dtgma import baselines
from implementations.dtgma.model import DTGMAModel


class TinyPerTask(TaskConditioned):
    """A shared Linear(3, 4) with 16 parameters and a head per registered task, Linear(4, 2) with 10 each.

    It also holds a pre-allocated adapter of 5 and a buffer of 7 values, and shares one weight with itself.
    """

    def __init__(self):
        super().__init__()
        self.shared = nn.Linear(3, 4)
        self.alias = self.shared  # the same tensors again: counted once
        self.adapter = nn.Parameter(torch.zeros(5))  # pre-allocated by the constructor: always counted
        self.heads = nn.ModuleDict()
        self.register_buffer("mask_table", torch.zeros(7))  # a buffer, not a parameter: never counted

    def add_task(self, task_id: int) -> None:
        self.heads[str(task_id)] = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor, task_id: int) -> torch.Tensor:
        return self.heads[str(task_id)](self.shared(x)) + self.adapter.sum()

    def task_registered_parameters(self) -> list[nn.Parameter]:
        return list(self.heads.parameters())


def test_construction_count_leaves_out_what_task_registration_creates_and_trained_count_keeps_it():
    model = TinyPerTask()
    for task_id in range(3):
        model.add_task(task_id)
    assert reported_parameter_count(model, "construction") == 16 + 5
    assert reported_parameter_count(model, "after_training") == 16 + 5 + 3 * 10
    assert trained_parameter_count(model) == 16 + 5 + 3 * 10
    assert parameter_count_outputs(model, "construction", prefix="tiny_") == {
        "tiny_parameter_count": 21, "tiny_parameter_count_trained": 51}


def test_construction_count_of_the_trained_model_equals_a_fresh_models_count():
    fresh = TinyPerTask()
    trained = TinyPerTask()
    for task_id in range(4):
        trained.add_task(task_id)
    for parameter in trained.parameters():  # frozen parameters still count
        parameter.requires_grad_(False)
    assert reported_parameter_count(trained, "construction") == trained_parameter_count(fresh) == 21


def test_models_without_per_task_declarations_count_everything_at_either_point():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    assert reported_parameter_count(model, "construction") == reported_parameter_count(model, "after_training") == 24


def test_unknown_counting_point_and_foreign_declared_parameters_are_rejected():
    model = TinyPerTask()
    with pytest.raises(ValueError, match="counted_at"):
        reported_parameter_count(model, "fresh")
    model.task_registered_parameters = lambda: [nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match="not parameters of the model"):
        reported_parameter_count(model, "construction")


def test_tiny_dtgma_and_hat_follow_the_rule():
    dtgma = DTGMAModel(6, hidden_dim=8, num_classes=2, n_heads=2, n_tasks_max=4)
    fresh = 6 * 8 + 8 + 2 * 2 * 2 * 8  # input projection and four LayerNorms
    per_task = 2 * (4 * (8 * 8 + 8) + (8 * 32 + 32) + (32 * 8 + 8)) + (8 * 2 + 2)
    for task_id in range(3):
        dtgma.add_task(task_id)
    dtgma.freeze_task(0)
    assert parameter_count_outputs(dtgma, "construction") == {
        "parameter_count": fresh, "parameter_count_trained": fresh + 3 * per_task}

    hat = baselines.HATMLP(6, 2, n_tasks=3)
    mlp = baselines.SharedHeadMLP(6, 2)
    assert parameter_count_outputs(hat, "construction") == {
        "parameter_count": trained_parameter_count(mlp),
        "parameter_count_trained": trained_parameter_count(mlp) + 2 * 3 * 256}
