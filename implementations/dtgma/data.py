"""The benchmark streams as the repository built them (spec §2.2, §2.3, §2.6).

The common `class_split` draws random per-class subsets; the repository took the *first* N images
of each class in file order, so the subsets here are built from the loaders' arrays directly.
Every function returns `(tasks, dataset_files)`, the files being `{relative name: sha256}`.
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from implementations.common.datasets import LabelledImages, load_cifar100, load_mnist, load_omniglot
from implementations.common.streams import Task

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # benchmarks/loaders.py Normalize (spec §2.2)
CIFAR100_MEAN = (0.5071, 0.4867, 0.4408)
CIFAR100_STD = (0.2675, 0.2565, 0.2761)
SPLIT_MNIST_PAIRS = ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))


def first_per_class(labels: np.ndarray, classes: Sequence[int], per_class: int | None) -> np.ndarray:
    """Indices of the first `per_class` samples of each class (all of them for None), in file order."""
    picks = []
    for label in classes:
        candidates = np.flatnonzero(labels == label)
        if per_class is not None:
            if len(candidates) < per_class:
                raise ValueError(f"class {label} has {len(candidates)} samples, fewer than {per_class}")
            candidates = candidates[:per_class]
        picks.append(candidates)
    return np.sort(np.concatenate(picks))


def _local_labels(y: np.ndarray, classes: Sequence[int]) -> torch.Tensor:
    lookup = {label: position for position, label in enumerate(classes)}
    return torch.tensor([lookup[int(label)] for label in y], dtype=torch.int64)


def _mnist_tensor(images: LabelledImages, indices: np.ndarray, device: str, flatten: bool) -> torch.Tensor:
    x, _ = images.subset(indices).to_tensors("cpu", flatten=flatten)
    return ((x - MNIST_MEAN) / MNIST_STD).to(device)


def split_mnist(data_dir: pathlib.Path, device: str, *, train_per_class: int | None = 1000,
                test_per_class: int | None = 100, flatten: bool = True) -> tuple[list[Task], dict]:
    """Split MNIST of experiments.py / cnn_experiments.py: digit pairs, lower digit = label 0, normalised.

    flatten=False keeps [N, 1, 28, 28] for the ResNet variant (spec §2.6: 28x28x1, as run).
    """
    train, test = load_mnist(data_dir, "train"), load_mnist(data_dir, "test")
    tasks = []
    for task_id, classes in enumerate(SPLIT_MNIST_PAIRS):
        train_indices = first_per_class(train.y, classes, train_per_class)
        test_indices = first_per_class(test.y, classes, test_per_class)
        tasks.append(Task(task_id, classes,
                          _mnist_tensor(train, train_indices, device, flatten),
                          _local_labels(train.y[train_indices], classes).to(device),
                          _mnist_tensor(test, test_indices, device, flatten),
                          _local_labels(test.y[test_indices], classes).to(device), labels="local"))
    return tasks, {**train.files, **test.files}


def legacy_permutations(n_tasks: int, seed: int, n_features: int = 784) -> list[np.ndarray]:
    """Task 0 the identity, then np.random.permutation after np.random.seed(seed) (spec §2.2, legacy RNG)."""
    state = np.random.RandomState(seed)
    return [np.arange(n_features)] + [state.permutation(n_features) for _ in range(n_tasks - 1)]


def permuted_mnist(data_dir: pathlib.Path, device: str, *, n_tasks: int, n_train: int = 2000, n_test: int = 500,
                   permutation_seed: int = 42) -> tuple[list[Task], dict]:
    """Permuted MNIST of the scalability test (spec §2.3): first n_train / n_test images, 10 classes."""
    train, test = load_mnist(data_dir, "train"), load_mnist(data_dir, "test")
    x_train = _mnist_tensor(train, np.arange(n_train), device, flatten=True)
    x_test = _mnist_tensor(test, np.arange(n_test), device, flatten=True)
    y_train = torch.tensor(train.y[:n_train]).to(device)
    y_test = torch.tensor(test.y[:n_test]).to(device)
    tasks = []
    for task_id, permutation in enumerate(legacy_permutations(n_tasks, permutation_seed)):
        order = torch.from_numpy(permutation).to(device)
        tasks.append(Task(task_id, tuple(range(10)), x_train[:, order], y_train, x_test[:, order], y_test,
                          "global", order))
    return tasks, {**train.files, **test.files}


def resize_omniglot(images: np.ndarray, side: int = 28) -> np.ndarray:
    """torchvision Resize(28) on the 'L' PIL image: PIL bilinear (with its antialiasing support)."""
    return np.stack([np.asarray(Image.fromarray(image).resize((side, side), Image.BILINEAR)) for image in images])


def omniglot(data_dir: pathlib.Path, device: str, *, split_seed: int, n_tasks: int = 10,
             characters_per_task: int = 20, train_per_character: int = 15,
             archives: Sequence[str] = ("images_background.zip",),
             character_seed: int | None = None) -> tuple[list[Task], dict]:
    """Omniglot of experiments.py (spec §2.2): the first n_tasks*20 characters in sorted order.

    character_seed: None keeps that faithful choice; a seed draws the characters at random instead
    (for the background-small archives, whose sorted order would make the first tasks one alphabet).
    Each character's 20 drawings are split 15 train / 5 test at random: unseeded in the original,
    drawn here from `split_seed`. Pixels: resized to 28x28, /255, no normalisation, not inverted.
    """
    drawings = load_omniglot(data_dir, archives)
    n_characters = n_tasks * characters_per_task
    if len(drawings.characters) < n_characters:
        raise ValueError(f"{archives} hold {len(drawings.characters)} characters, fewer than {n_characters}")
    order = np.argsort(np.array(drawings.characters), kind="stable")
    if character_seed is not None:
        order = np.random.default_rng(character_seed).permutation(order)
    order = order[:n_characters]
    rng = np.random.default_rng(split_seed)
    tasks = []
    for task_id in range(n_tasks):
        characters = order[task_id * characters_per_task:(task_id + 1) * characters_per_task]
        train_indices, test_indices, train_labels, test_labels = [], [], [], []
        for local, character in enumerate(characters):
            members = rng.permutation(np.flatnonzero(drawings.character_index == character))
            train_indices += members[:train_per_character].tolist()
            test_indices += members[train_per_character:].tolist()
            train_labels += [local] * train_per_character
            test_labels += [local] * (len(members) - train_per_character)

        def tensor(indices: list[int]) -> torch.Tensor:
            pixels = resize_omniglot(drawings.images[indices]).reshape(len(indices), -1)
            return (torch.tensor(pixels, dtype=torch.float32) / 255.0).to(device)

        tasks.append(Task(task_id, tuple(int(c) for c in characters), tensor(train_indices),
                          torch.tensor(train_labels).to(device), tensor(test_indices),
                          torch.tensor(test_labels).to(device), labels="local"))
    return tasks, dict(drawings.files)


def split_cifar100(data_dir: pathlib.Path, device: str, *, train_per_class: int = 450,
                   test_per_class: int = 90) -> tuple[list[Task], dict]:
    """Split CIFAR-100 of experiments.py: 10 tasks of 10 classes, per-channel normalised, HWC-flattened."""
    train, test = load_cifar100(data_dir, "train"), load_cifar100(data_dir, "test")
    mean, std = torch.tensor(CIFAR100_MEAN), torch.tensor(CIFAR100_STD)

    def tensor(images: LabelledImages, indices: np.ndarray) -> torch.Tensor:
        x, _ = images.subset(indices).to_tensors("cpu", channels_first=False)
        return ((x - mean) / std).reshape(len(indices), -1).to(device)

    tasks = []
    for task_id in range(10):
        classes = tuple(range(10 * task_id, 10 * task_id + 10))
        train_indices = first_per_class(train.y, classes, train_per_class)
        test_indices = first_per_class(test.y, classes, test_per_class)
        tasks.append(Task(task_id, classes, tensor(train, train_indices),
                          _local_labels(train.y[train_indices], classes).to(device), tensor(test, test_indices),
                          _local_labels(test.y[test_indices], classes).to(device), labels="local"))
    return tasks, {**train.files, **test.files}
