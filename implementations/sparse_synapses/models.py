"""The MLP and CNN of the experiments with their sparsify switches (spec §3.3, §3.4).

`SparsityConfig` carries the switches for one arm: which non-linearity a hidden block uses (ReLU,
k-WTA, or ReLU followed by k-WTA) and whether its weights are masked. The dense arm is
`SparsityConfig()`; every arm builds its Linear/Conv2d layers in the same order, so with the same
torch seed all arms start from the same weights before masking (spec §6.2.1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from implementations.common.models import TaskConditioned
from implementations.sparse_synapses.kwinners import KWinners, KWinners2d
from implementations.sparse_synapses.sparse_weights import SparseWeights, SparseWeights2d

ACTIVATIONS = ("relu", "kwinners", "relu_kwinners")


@dataclass(frozen=True)
class SparsityConfig:
    """One arm's switches. `*_density` None: no mask; a float: fraction of weights kept per unit."""

    activation: str = "relu"
    percent_on_fc: float = 0.1
    percent_on_conv: float = 0.1
    k_inference_factor: float = 1.0
    boost_strength: float = 1.0
    boost_strength_factor: float = 1.0
    duty_cycle_period: int = 1000
    break_ties: bool = True  # the 2019 library always took an exact top-k (spec §5.1)
    weight_density_fc: float | None = None
    weight_density_conv: float | None = None
    mask_behaviour: str = "rezero_after_step"

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")

    @property
    def uses_kwinners(self) -> bool:
        return self.activation != "relu"

    def boosting(self) -> dict:
        return dict(k_inference_factor=self.k_inference_factor, boost_strength=self.boost_strength,
                    boost_strength_factor=self.boost_strength_factor, duty_cycle_period=self.duty_cycle_period,
                    break_ties=self.break_ties)


def _linear(in_features: int, out_features: int, config: SparsityConfig, rng: np.random.Generator) -> nn.Module:
    layer = nn.Linear(in_features, out_features)
    if config.weight_density_fc is None:
        return layer
    return SparseWeights(layer, config.weight_density_fc, config.mask_behaviour, rng)


def _fc_activation(units: int, config: SparsityConfig) -> list[nn.Module]:
    # The HEAD sparse MLP has no ReLU: k-WTA is its only non-linearity (spec §3.3).
    layers: list[nn.Module] = [nn.ReLU()] if config.activation in ("relu", "relu_kwinners") else []
    if config.uses_kwinners:
        layers.append(KWinners(units, config.percent_on_fc, **config.boosting()))
    return layers


def hidden_blocks(in_features: int, hidden: Sequence[int], dropout: float, config: SparsityConfig,
                  rng: np.random.Generator) -> nn.Sequential:
    """Per width: [SparseWeights](Linear) -> ReLU and/or KWinners -> Dropout (spec §3.3)."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_features
    for units in hidden:
        layers += [_linear(width, units, config, rng), *_fc_activation(units, config), nn.Dropout(dropout)]
        width = units
    return nn.Sequential(*layers)


class SparseMLP(nn.Module):
    """SimpleMLP: hidden blocks and one dense classifier, which is never masked (spec §3.3)."""

    def __init__(self, in_features: int, hidden: Sequence[int], out_features: int, dropout: float,
                 config: SparsityConfig, rng: np.random.Generator):
        super().__init__()
        self.trunk = hidden_blocks(in_features, hidden, dropout, config, rng)
        self.classifier = nn.Linear(hidden[-1], out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.trunk(x))


class MultiHeadSparseMLP(TaskConditioned):
    """The multi-head path (spec §3.6): a shared trunk and one classifier per task, chosen by task id."""

    def __init__(self, in_features: int, hidden: Sequence[int], out_features: int, n_heads: int, dropout: float,
                 config: SparsityConfig, rng: np.random.Generator):
        super().__init__()
        self.trunk = hidden_blocks(in_features, hidden, dropout, config, rng)
        self.heads = nn.ModuleList(nn.Linear(hidden[-1], out_features) for _ in range(n_heads))

    def forward(self, x: torch.Tensor, task_id: int) -> torch.Tensor:
        return self.heads[task_id](self.trunk(x))


def conv_trunk(in_shape: tuple[int, int, int], conv_channels: Sequence[int], kernel_size: int, fc_units: int,
               dropout: float, config: SparsityConfig, rng: np.random.Generator) -> nn.Sequential:
    """SimpleCNN's feature extractor (spec §3.4): per conv, [SparseWeights2d](Conv, no padding) -> ReLU
    -> [local KWinners2d] -> Dropout; then Flatten -> [SparseWeights](Linear) -> ReLU -> [KWinners] -> Dropout.

    In the CNN the k-WTA layers follow a ReLU, in both the HEAD and the inferred 2019 network.
    """
    channels, height, width = in_shape
    layers: list[nn.Module] = []
    for out_channels in conv_channels:
        conv = nn.Conv2d(channels, out_channels, kernel_size)
        if config.weight_density_conv is not None:
            conv = SparseWeights2d(conv, config.weight_density_conv, config.mask_behaviour, rng)
        layers += [conv, nn.ReLU()]
        if config.uses_kwinners:
            layers.append(KWinners2d(out_channels, config.percent_on_conv, local=True, **config.boosting()))
        layers.append(nn.Dropout(dropout))
        channels, height, width = out_channels, height - kernel_size + 1, width - kernel_size + 1
    layers += [nn.Flatten(), _linear(channels * height * width, fc_units, config, rng), nn.ReLU()]
    if config.uses_kwinners:
        layers.append(KWinners(fc_units, config.percent_on_fc, **config.boosting()))
    layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class SparseCNN(nn.Module):
    """SimpleCNN with one dense classifier."""

    def __init__(self, in_shape: tuple[int, int, int], conv_channels: Sequence[int], kernel_size: int,
                 fc_units: int, out_features: int, dropout: float, config: SparsityConfig, rng: np.random.Generator):
        super().__init__()
        self.in_shape = tuple(in_shape)
        self.trunk = conv_trunk(in_shape, conv_channels, kernel_size, fc_units, dropout, config, rng)
        self.classifier = nn.Linear(fc_units, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Permuted-MNIST tasks hold flat rows; the permuted image is the row reshaped (spec §3.1).
        return self.classifier(self.trunk(x.reshape(len(x), *self.in_shape)))


class MultiHeadSparseCNN(TaskConditioned):
    """SimpleCNN on the multi-head path (iCIFAR): shared trunk, one classifier per task."""

    def __init__(self, in_shape: tuple[int, int, int], conv_channels: Sequence[int], kernel_size: int,
                 fc_units: int, out_features: int, n_heads: int, dropout: float, config: SparsityConfig,
                 rng: np.random.Generator):
        super().__init__()
        self.in_shape = tuple(in_shape)
        self.trunk = conv_trunk(in_shape, conv_channels, kernel_size, fc_units, dropout, config, rng)
        self.heads = nn.ModuleList(nn.Linear(fc_units, out_features) for _ in range(n_heads))

    def forward(self, x: torch.Tensor, task_id: int) -> torch.Tensor:
        return self.heads[task_id](self.trunk(x.reshape(len(x), *self.in_shape)))
