"""The script's CV networks (spec §1.2)."""

from __future__ import annotations

import torch
from torch import nn

from implementations.common.models import TaskConditioned

Z_DIM = 64
IMAGE_PIXELS = 28 * 28


def cv_features() -> nn.Sequential:
    """conv 1->16 3x3 pad 1, ReLU, pool 2; conv 16->32, ReLU, pool 2; flatten; linear 1568->256.

    No activation after the last linear layer, as in the script. 406,464 parameters.
    """
    return nn.Sequential(
        nn.Conv2d(1, 16, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 256),
    )


class NeocortexNet(TaskConditioned):
    """M_ctx: shared `features` and a dict of 2-way heads keyed "task_t"; forward(x, task_id)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = cv_features()
        self.classifiers = nn.ModuleDict()

    def add_task_head(self, task_id: int) -> nn.Linear:
        head = nn.Linear(256, 2).to(next(self.features.parameters()).device)
        self.classifiers[f"task_{task_id}"] = head
        return head

    def head(self, task_id: int) -> nn.Linear:
        return self.classifiers[f"task_{task_id}"]

    def forward(self, x: torch.Tensor, task_id: int) -> torch.Tensor:
        return self.head(task_id)(self.features(x))


class SharedHeadNet(nn.Module):
    """The script's fine-tuning baseline: the same features and one 2-way head for every task (§1.7)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = cv_features()
        self.head = nn.Linear(256, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class Generator(nn.Module):
    """G_mem: [z (64), embedding(label) (2)] -> 128 -> ReLU -> 784 -> tanh, as 1x28x28 images."""

    def __init__(self, z_dim: int = Z_DIM) -> None:
        super().__init__()
        self.label_embedding = nn.Embedding(2, 2)
        self.net = nn.Sequential(nn.Linear(z_dim + 2, 128), nn.ReLU(), nn.Linear(128, IMAGE_PIXELS), nn.Tanh())

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([z, self.label_embedding(labels)], dim=1)).view(-1, 1, 28, 28)


class Discriminator(nn.Module):
    """D_mem: [image (784), embedding(label) (2)] -> 128 -> LeakyReLU(0.2) -> 1 -> sigmoid."""

    def __init__(self) -> None:
        super().__init__()
        self.label_embedding = nn.Embedding(2, 2)
        self.net = nn.Sequential(nn.Linear(IMAGE_PIXELS + 2, 128), nn.LeakyReLU(0.2), nn.Linear(128, 1), nn.Sigmoid())

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([images.flatten(1), self.label_embedding(labels)], dim=1))
