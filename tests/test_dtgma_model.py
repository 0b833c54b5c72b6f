"""DTG-MA as implemented (spec §1): mask inertness, task isolation, parameter counts, freezing."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from implementations.common.streams import Task
from implementations.dtgma.controls import collapsed_forward
from implementations.dtgma.model import DTGMAModel, parameter_count, train_continual


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_model(n_tasks: int = 3, seed: int = 0) -> DTGMAModel:
    torch.manual_seed(seed)
    model = DTGMAModel(12, hidden_dim=16, num_classes=2, n_heads=4, n_tasks_max=n_tasks)
    for task_id in range(n_tasks):
        model.add_task(task_id)
    return model.eval()


def tiny_tasks(n_tasks: int = 3, n_train: int = 40, n_test: int = 16) -> list[Task]:
    generator = torch.Generator().manual_seed(7)
    tasks = []
    for task_id in range(n_tasks):
        x_train, x_test = torch.randn(n_train, 12, generator=generator), torch.randn(n_test, 12, generator=generator)
        tasks.append(Task(task_id, (0, 1), x_train, (x_train[:, task_id] > 0).long(), x_test,
                          (x_test[:, task_id] > 0).long(), "local"))
    return tasks


finite_masks = st.floats(min_value=-1e30, max_value=1e30, allow_nan=False, allow_infinity=False)


@settings(max_examples=20, deadline=None)
@given(value=finite_masks, task_id=st.integers(0, 2), seed=st.integers(0, 1000))
def test_any_finite_mask_leaves_the_output_bit_identical(value, task_id, seed):
    model = tiny_model(seed=seed)
    x = torch.randn(5, 12, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        before = model(x, task_id)
        model.set_task_mask(task_id, value)
        assert torch.equal(model(x, task_id), before)


def test_an_infinite_mask_makes_the_output_nan_and_unregistered_tasks_start_infinite():
    torch.manual_seed(0)
    model = DTGMAModel(12, hidden_dim=16, n_tasks_max=4).eval()
    assert torch.isinf(model.layers[0].task_masks).all()
    model.add_task(1)
    assert (model.layers[0].task_masks[1] == 0).all() and torch.isinf(model.layers[0].task_masks[0]).all()
    model.set_task_mask(1, float("-inf"))
    with torch.no_grad():
        assert torch.isnan(model(torch.randn(3, 12), 1)).all()


@settings(max_examples=15, deadline=None)
@given(task_id=st.integers(0, 2), other=st.integers(0, 2), scale=st.floats(0.1, 100.0), seed=st.integers(0, 1000))
def test_changing_another_tasks_parameters_never_changes_a_tasks_output(task_id, other, scale, seed):
    if other == task_id:
        return
    model = tiny_model(seed=seed)
    x = torch.randn(5, 12, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        before = model(x, task_id)
        for name, parameter in model.named_parameters():
            if any(f"{part}.{other}." in name for part in ("attention", "ffn", "heads")):
                parameter.add_(torch.randn_like(parameter) * scale)
        assert torch.equal(model(x, task_id), before)


def test_query_and_key_receive_exactly_zero_gradient_in_train_mode():
    model = tiny_model().train()
    torch.nn.functional.cross_entropy(model(torch.randn(32, 12), 1), torch.randint(0, 2, (32,))).backward()
    grads = [p.grad for name, p in model.named_parameters() if (".query." in name or ".key." in name)
             and "attention.1." in name]
    assert len(grads) == 8 and all(g is not None and torch.count_nonzero(g) == 0 for g in grads)
    values = [p.grad for name, p in model.named_parameters() if ".value." in name and "attention.1." in name]
    assert all(torch.count_nonzero(g) > 0 for g in values)


def test_collapsed_attention_is_the_same_function():
    model = tiny_model()
    x = torch.randn(9, 12)
    with torch.no_grad():
        assert torch.equal(collapsed_forward(model, x, 2), model(x, 2))


@pytest.mark.parametrize("input_dim, classes, tasks, options, fresh, registered", [
    (784, 2, 5, {}, 203_008, 8_092_938),
    (3072, 10, 10, {}, 788_736, 16_589_156),
    (784, 20, 10, {}, 203_008, 16_029_128),
    (1536, 2, 8, {"n_tasks_max": 8}, 395_520, 13_019_408),
])
def test_parameter_counts_match_spec_1_6(input_dim, classes, tasks, options, fresh, registered):
    model = DTGMAModel(input_dim, num_classes=classes, **options)
    assert parameter_count(model) == fresh
    for task_id in range(tasks):
        model.add_task(task_id)
    assert parameter_count(model) == registered
    per_task = 2 * (4 * 65_792 + 263_168 + 262_400) + 256 * classes + classes
    assert registered - fresh == tasks * per_task


def train_tiny(freeze: bool, seed: int = 3) -> tuple[dict, DTGMAModel]:
    torch.manual_seed(seed)
    model = DTGMAModel(12, hidden_dim=16, num_classes=2, n_tasks_max=3)
    result = train_continual(model, tiny_tasks(), epochs=2, lr=1e-2, batch_size=8, seed=seed, device="cpu",
                             freeze_after_training=freeze)
    return result, model


def test_freeze_and_no_freeze_are_bit_identical_and_never_forget():
    frozen_result, frozen = train_tiny(True)
    free_result, free = train_tiny(False)
    assert frozen_result["accuracy_matrix"] == free_result["accuracy_matrix"]
    for (name, a), (_, b) in zip(frozen.state_dict().items(), free.state_dict().items()):
        assert torch.equal(a, b), name
    matrix = frozen_result["accuracy_matrix"]
    for j in range(3):
        assert all(matrix[i][j] == matrix[j][j] for i in range(j, 3))
    assert all(frozen.task_parameters(i) == [] for i in range(3))
    assert all(p.requires_grad for p in free.task_parameters(0))


def test_training_leaves_shared_projection_and_layernorms_untouched_and_learns():
    torch.manual_seed(3)
    model = DTGMAModel(12, hidden_dim=16, num_classes=2, n_tasks_max=3)
    shared = {name: p.detach().clone() for name, p in model.shared_parameters().items()}
    assert len(shared) == 2 + 2 * 2 * 2  # projection weight and bias, 2 LayerNorms x (weight, bias) x 2 layers
    result = train_continual(model, tiny_tasks(), epochs=3, lr=1e-2, batch_size=8, seed=3, device="cpu")
    for name, p in model.shared_parameters().items():
        assert torch.equal(p, shared[name]), name
    assert min(result["accuracy_matrix"][i][i] for i in range(3)) > 0.6


def test_task_parameters_hold_exactly_one_task_and_shrink_when_frozen():
    model = tiny_model()
    expected = 2 * (4 * (16 * 16 + 16) + (16 * 64 + 64) + (64 * 16 + 16)) + 16 * 2 + 2
    assert sum(p.numel() for p in model.task_parameters(1)) == expected
    model.freeze_task(1)
    assert model.task_parameters(1) == []
    assert math.isclose(sum(p.numel() for p in model.task_parameters(0)), expected)
