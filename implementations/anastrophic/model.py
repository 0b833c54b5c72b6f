"""The script's SimpleCNN (spec §2): two conv + max-pool blocks, then 1568 -> 128 -> 10."""

from __future__ import annotations

import torch
from torch import nn


class SimpleCNN(nn.Module):
    """conv 1->16 3x3 pad 1, ReLU, pool 2; conv 16->32, ReLU, pool 2; fc 1568->128, ReLU; fc 128->10.

    No batch norm, no dropout: 206,922 parameters. Parameter names match the script's
    (conv1, conv2, fc1, fc2), since the regulariser selects tensors by the substring "weight".
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, padding=1)
        self.fc1 = nn.Linear(32 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def permute_hidden_units(model: SimpleCNN, permutation: torch.Tensor) -> None:
    """Reorder fc1's 128 hidden units in place (rows of fc1, its bias, columns of fc2).

    The network computes the same function (up to float summation order), so any "functional
    invariant" must be unchanged by it (spec §1.2).
    """
    with torch.no_grad():
        model.fc1.weight.copy_(model.fc1.weight[permutation])
        model.fc1.bias.copy_(model.fc1.bias[permutation])
        model.fc2.weight.copy_(model.fc2.weight[:, permutation])
