"""Task streams of implementations.common.streams: class splits and permuted tasks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from implementations.common.datasets import LabelledImages
from implementations.common.streams import class_split, permuted, pixel_permutations


def tiny_images(n_classes: int = 10, per_class: int = 8, seed: int = 0) -> LabelledImages:
    """Synthetic 4x4 images, classes in a shuffled order, pixel 0 = the sample's position (for tracing)."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.repeat(np.arange(n_classes), per_class)).astype(np.int64)
    x = rng.integers(0, 256, size=(len(y), 4, 4), dtype=np.uint8)
    x[:, 0, 0] = np.arange(len(y))
    return LabelledImages(x, y, "tiny")


TRAIN, TEST = tiny_images(seed=0), tiny_images(per_class=3, seed=1)


def test_class_split_natural_order_keeps_every_sample():
    tasks = class_split(TRAIN, TEST, classes_per_task=2)
    assert [task.classes for task in tasks] == [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
    for task in tasks:
        assert task.x_train.shape == (16, 16) and task.x_test.shape == (6, 16)
        assert set(task.y_train.tolist()) == set(task.classes) and task.labels == "global"
        positions = (task.x_train[:, 0] * 255).round().long()
        assert torch.equal(positions, positions.sort().values)  # dataset order kept
        assert torch.equal(task.y_train, torch.tensor(TRAIN.y[positions.numpy()]))


def test_class_split_local_labels_are_positions_in_the_task():
    tasks = class_split(TRAIN, TEST, task_classes=[(7, 3), (1, 0, 9)], labels="local")
    assert [task.classes for task in tasks] == [(7, 3), (1, 0, 9)]
    first = tasks[0]
    positions = (first.x_train[:, 0] * 255).round().long().numpy()
    assert first.y_train.tolist() == [{7: 0, 3: 1}[label] for label in TRAIN.y[positions]]
    assert set(tasks[1].y_test.tolist()) == {0, 1, 2}


def test_seeded_subsets_and_class_orders_are_deterministic():
    def build(subset_seed, class_order_seed=3):
        return class_split(TRAIN, TEST, classes_per_task=5, class_order_seed=class_order_seed, train_per_class=3,
                           test_per_class=2, subset_seed=subset_seed)

    first, again, other = build(0), build(0), build(1)
    assert [task.classes for task in first] == [task.classes for task in again]
    assert sorted(first[0].classes + first[1].classes) == list(range(10))
    assert first[0].classes != (0, 1, 2, 3, 4)  # this seed shuffles
    for a, b in zip(first, again):
        assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert first[0].x_train.shape == (15, 16) and first[0].x_test.shape == (10, 16)
    assert np.bincount(first[0].y_train.numpy(), minlength=10)[list(first[0].classes)].tolist() == [3] * 5
    assert not torch.equal(first[0].x_train, other[0].x_train)


def test_train_subset_does_not_depend_on_test_subsampling():
    with_test = class_split(TRAIN, TEST, classes_per_task=2, train_per_class=4, test_per_class=1, subset_seed=7)
    without = class_split(TRAIN, TEST, classes_per_task=2, train_per_class=4, subset_seed=7)
    assert all(torch.equal(a.x_train, b.x_train) for a, b in zip(with_test, without))


def test_class_split_keeps_images_as_asked():
    colour = LabelledImages(np.zeros((4, 2, 2, 3), np.uint8), np.array([0, 1, 0, 1]), "colour")
    tasks = class_split(colour, colour, classes_per_task=1, flatten=False)
    assert tasks[0].x_train.shape == (2, 3, 2, 2)


@pytest.mark.parametrize("arguments", [
    {},  # neither classes_per_task nor task_classes
    {"classes_per_task": 2, "task_classes": [(0, 1)]},
    {"classes_per_task": 3},  # 10 classes do not split into tasks of 3
    {"task_classes": [(0, 1), (1, 2)]},  # overlapping
    {"task_classes": [(0, 11)]},  # unknown class
    {"task_classes": [(0, 1)], "class_order_seed": 1},
    {"classes_per_task": 2, "train_per_class": 2},  # subsampling without a seed
    {"classes_per_task": 2, "train_per_class": 9, "subset_seed": 0},  # more than a class holds
    {"classes_per_task": 2, "labels": "task"},
])
def test_class_split_rejects_inconsistent_arguments(arguments):
    with pytest.raises(ValueError):
        class_split(TRAIN, TEST, **arguments)


def test_permuted_tasks_apply_their_permutation_to_every_image():
    tasks = permuted(TRAIN, TEST, n_tasks=3, seed=5)
    base_train, base_y = TRAIN.to_tensors(flatten=True)
    base_test, _ = TEST.to_tensors(flatten=True)
    permutations = pixel_permutations(3, 16, seed=5)
    for task, permutation in zip(tasks, permutations):
        assert torch.equal(task.x_train, base_train[:, permutation])
        assert torch.equal(task.x_test, base_test[:, permutation])
        assert torch.equal(task.y_train, base_y) and task.classes == tuple(range(10))
        assert torch.equal(task.input_permutation, torch.from_numpy(permutation))
    assert not np.array_equal(permutations[0], np.arange(16))


def test_permute_first_false_keeps_task_zero_and_the_other_permutations():
    plain = permuted(TRAIN, TEST, n_tasks=3, seed=5, permute_first=False)
    shuffled = permuted(TRAIN, TEST, n_tasks=3, seed=5)
    assert torch.equal(plain[0].x_train, TRAIN.to_tensors(flatten=True)[0])
    assert all(torch.equal(a.x_train, b.x_train) for a, b in zip(plain[1:], shuffled[1:]))


@settings(max_examples=30, deadline=None)
@given(n_tasks=st.integers(1, 5), n_features=st.integers(1, 64), seed=st.integers(0, 2**32 - 1),
       permute_first=st.booleans())
def test_pixel_permutations_are_seeded_bijections(n_tasks, n_features, seed, permute_first):
    permutations = pixel_permutations(n_tasks, n_features, seed, permute_first)
    assert len(permutations) == n_tasks
    for permutation in permutations:
        assert np.array_equal(np.sort(permutation), np.arange(n_features))
    again = pixel_permutations(n_tasks, n_features, seed, permute_first)
    assert all(np.array_equal(a, b) for a, b in zip(permutations, again))
