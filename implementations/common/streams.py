"""Task streams (benchmarks) built from labelled images: class splits and pixel permutations.

Every task holds its tensors on one device, ready to be batched by indexing. All randomness comes
from explicit seeds through numpy Generators, so a stream depends on its arguments only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from .datasets import LabelledImages

LABEL_MODES = ("global", "local")


@dataclass(eq=False)
class Task:
    """One task of a stream.

    classes: the original class numbers the task holds, in the order that defines local labels.
    labels: "global" (y holds the original class numbers) or "local" (y = position in `classes`).
    input_permutation: for permuted tasks, the pixel order applied (x_task = x[:, permutation]).
    """

    task_id: int
    classes: tuple[int, ...]
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    labels: str = "global"
    input_permutation: torch.Tensor | None = None


def _task_classes(all_classes: np.ndarray, classes_per_task: int | None, task_classes: Sequence[Sequence[int]] | None,
                  class_order_seed: int | None) -> list[tuple[int, ...]]:
    if (classes_per_task is None) == (task_classes is None):
        raise ValueError("give exactly one of classes_per_task and task_classes")
    if task_classes is not None:
        if class_order_seed is not None:
            raise ValueError("class_order_seed only applies to classes_per_task; order task_classes yourself")
        chosen = [tuple(int(c) for c in classes) for classes in task_classes]
        flat = [c for classes in chosen for c in classes]
        unknown = sorted(set(flat) - set(all_classes.tolist()))
        if unknown or len(flat) != len(set(flat)):
            raise ValueError(f"task_classes must name distinct known classes; unknown {unknown}, given {chosen}")
        return chosen
    if classes_per_task <= 0 or len(all_classes) % classes_per_task:
        raise ValueError(f"{len(all_classes)} classes cannot be split into tasks of {classes_per_task}")
    if class_order_seed is None:
        order = all_classes
    else:
        order = np.random.default_rng(class_order_seed).permutation(all_classes)
    return [tuple(int(c) for c in order[start:start + classes_per_task])
            for start in range(0, len(order), classes_per_task)]


def _select(y: np.ndarray, classes: Sequence[int], per_class: int | None,
            rng: np.random.Generator | None) -> np.ndarray:
    """Indices of the task's samples, in dataset order: all of them, or `per_class` drawn per class."""
    if per_class is None:
        return np.flatnonzero(np.isin(y, classes))
    picks = []
    for label in classes:
        candidates = np.flatnonzero(y == label)
        if len(candidates) < per_class:
            raise ValueError(f"class {label} has {len(candidates)} samples, fewer than the {per_class} asked for")
        picks.append(rng.choice(candidates, size=per_class, replace=False))
    return np.sort(np.concatenate(picks))


def _local_labels(classes: Sequence[int]) -> np.ndarray:
    """Lookup table: original class number -> its position in `classes` (-1 for other classes)."""
    table = np.full(max(classes) + 1, -1, dtype=np.int64)
    table[list(classes)] = np.arange(len(classes))
    return table


def class_split(train: LabelledImages, test: LabelledImages, *, classes_per_task: int | None = None,
                task_classes: Sequence[Sequence[int]] | None = None, class_order_seed: int | None = None,
                train_per_class: int | None = None, test_per_class: int | None = None,
                subset_seed: int | None = None, labels: str = "global", device: str | torch.device = "cpu",
                flatten: bool = True, divide_by: float | None = 255.0, dtype: torch.dtype = torch.float32,
                channels_first: bool = True) -> list[Task]:
    """Split a dataset into tasks of disjoint classes (Split MNIST, Split CIFAR-100, ...).

    Classes: `classes_per_task` consecutive classes of the sorted class list (shuffled first by
    `np.random.default_rng(class_order_seed)` if a seed is given), or the explicit `task_classes`.
    Subsets: `train_per_class` / `test_per_class` samples per class, drawn without replacement
    from two independent generators spawned from `subset_seed` (train draws do not depend on
    whether the test set is subsampled); None keeps every sample. Samples stay in dataset order.
    Tensors: as `LabelledImages.to_tensors(device, dtype, divide_by, flatten, channels_first)`.
    """
    if labels not in LABEL_MODES:
        raise ValueError(f"labels must be one of {LABEL_MODES}, got {labels!r}")
    subsampled = train_per_class is not None or test_per_class is not None
    if subsampled and subset_seed is None:
        raise ValueError("subsampling needs an explicit subset_seed")
    train_rng, test_rng = ((np.random.default_rng(child) for child in np.random.SeedSequence(subset_seed).spawn(2))
                           if subsampled else (None, None))
    tasks = []
    classes_of_tasks = _task_classes(np.unique(train.y), classes_per_task, task_classes, class_order_seed)
    for task_id, classes in enumerate(classes_of_tasks):
        splits = []
        for images, per_class, rng in ((train, train_per_class, train_rng), (test, test_per_class, test_rng)):
            chosen = images.subset(_select(images.y, classes, per_class, rng))
            if labels == "local":
                chosen = replace(chosen, y=_local_labels(classes)[chosen.y])
            splits.append(chosen.to_tensors(device, dtype, divide_by, flatten, channels_first))
        (x_train, y_train), (x_test, y_test) = splits
        tasks.append(Task(task_id, classes, x_train, y_train, x_test, y_test, labels))
    return tasks


def pixel_permutations(n_tasks: int, n_features: int, seed: int, permute_first: bool = True) -> list[np.ndarray]:
    """Permutation i = the i-th `permutation(n_features)` of `np.random.default_rng(seed)`.

    With permute_first=False task 0 keeps the identity; the draw is still made, so tasks 1.. get
    the same permutations either way.
    """
    rng = np.random.default_rng(seed)
    permutations = [rng.permutation(n_features) for _ in range(n_tasks)]
    if not permute_first:
        permutations[0] = np.arange(n_features)
    return permutations


def permuted(train: LabelledImages, test: LabelledImages, *, n_tasks: int, seed: int, permute_first: bool = True,
             device: str | torch.device = "cpu", divide_by: float | None = 255.0,
             dtype: torch.dtype = torch.float32) -> list[Task]:
    """Permuted-pixel tasks (Permuted MNIST): every task holds every class, inputs flattened, labels global.

    Memory: each task holds its own permuted copy, n_tasks x N x features x 4 bytes in float32
    (10 tasks of full MNIST: 2.1 GB); subsample `train` / `test` first where that is too much.
    """
    x_train, y_train = train.to_tensors(device, dtype, divide_by, flatten=True)
    x_test, y_test = test.to_tensors(device, dtype, divide_by, flatten=True)
    classes = tuple(int(c) for c in np.unique(train.y))
    tasks = []
    for task_id, permutation in enumerate(pixel_permutations(n_tasks, x_train.shape[1], seed, permute_first)):
        order = torch.from_numpy(permutation).to(device)
        tasks.append(Task(task_id, classes, x_train[:, order], y_train, x_test[:, order], y_test, "global", order))
    return tasks
