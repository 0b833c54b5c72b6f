"""Properties of the fixed random weight masks (implementations/sparse_synapses/sparse_weights.py, spec §5.3)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from torch import nn

from implementations.sparse_synapses.sparse_weights import (
    SparseWeights,
    SparseWeights2d,
    kept_per_unit,
    nonzero_parameter_count,
    rezero_weights,
)

DENSITIES = st.floats(0.01, 0.99)
BEHAVIOURS = st.sampled_from(["2019", "rezero_after_step"])


@settings(max_examples=40, deadline=None)
@given(units=st.integers(1, 12), fan_in=st.integers(1, 60), density=DENSITIES, behaviour=BEHAVIOURS,
       seed=st.integers(0, 2**16))
def test_fraction_of_nonzero_inputs_per_unit_is_the_configured_density(units, fan_in, density, behaviour, seed):
    layer = SparseWeights(nn.Linear(fan_in, units), density, behaviour, np.random.default_rng(seed))
    kept = kept_per_unit(density, fan_in, behaviour)
    assert ((layer.module.weight != 0).sum(dim=1) == kept).all()  # the same fan-in for every unit
    # round() to the nearest count: within half an input of the density (2019 rounds the zeros instead).
    assert abs(kept / fan_in - density) <= 0.5 / fan_in + 1e-12


@settings(max_examples=25, deadline=None)
@given(out_channels=st.integers(1, 6), in_channels=st.integers(1, 4), kernel=st.integers(1, 3), density=DENSITIES,
       behaviour=BEHAVIOURS, seed=st.integers(0, 2**16))
def test_conv_masks_keep_the_density_of_each_output_channel(out_channels, in_channels, kernel, density, behaviour,
                                                          seed):
    layer = SparseWeights2d(nn.Conv2d(in_channels, out_channels, kernel), density, behaviour,
                            np.random.default_rng(seed))
    fan_in = in_channels * kernel * kernel
    assert ((layer.module.weight != 0).flatten(1).sum(dim=1) == kept_per_unit(density, fan_in, behaviour)).all()


def test_density_counts_of_the_spec():
    assert kept_per_unit(0.1, 784, "rezero_after_step") == 78  # spec §3.3: 78 of 784 at w = 0.1
    # 2019 drew the zeros: round(0.9 * 5) = round(4.5) = 4 zeros, so 1 kept, where HEAD keeps round(0.5) = 0.
    assert kept_per_unit(0.1, 5, "2019") == 1 and kept_per_unit(0.1, 5, "rezero_after_step") == 0


def sgd_steps(layer: nn.Module, steps: int, lr: float, momentum: float, weight_decay: float, rezero: bool,
              seed: int) -> None:
    optimizer = torch.optim.SGD(layer.parameters(), lr=lr, momentum=momentum, nesterov=momentum > 0,
                                weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    layer.train()
    for _ in range(steps):
        x = torch.randn(5, layer.module.in_features, generator=generator)
        loss = (layer(x) - 1).pow(2).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if rezero:
            rezero_weights(layer)


@example(steps=1, lr=0.1, momentum=0.9, weight_decay=1e-4, density=0.1, seed=0)
@settings(max_examples=30, deadline=None)
@given(steps=st.integers(1, 25), lr=st.floats(1e-3, 1.0), momentum=st.sampled_from([0.0, 0.5, 0.9]),
       weight_decay=st.sampled_from([0.0, 1e-4, 1e-2]), density=DENSITIES, seed=st.integers(0, 2**16))
def test_a_masked_weight_stays_exactly_zero_after_any_number_of_steps_with_rezeroing(steps, lr, momentum,
                                                                                      weight_decay, density, seed):
    layer = SparseWeights(nn.Linear(12, 7), density, "rezero_after_step", np.random.default_rng(seed))
    sgd_steps(layer, steps, lr, momentum, weight_decay, rezero=True, seed=seed)
    assert (layer.module.weight[layer.zero_mask] == 0).all()
    layer.eval()(torch.ones(1, 12))
    assert (layer.module.weight[layer.zero_mask] == 0).all()  # exact at evaluation too


def test_without_rezeroing_todays_layer_turns_dense_after_a_few_steps():
    """The porting risk of §5.3: today's forward never re-zeroes, so a project that never calls
    rezero_weights trains a dense layer from a sparse initialisation."""
    layer = SparseWeights(nn.Linear(40, 20), 0.1, "rezero_after_step", np.random.default_rng(0))
    sgd_steps(layer, 3, 0.1, 0.9, 1e-4, rezero=False, seed=0)
    assert (layer.module.weight != 0).float().mean().item() == 1.0


def test_2019_masks_hold_in_training_forwards_but_not_after_the_last_step():
    layer = SparseWeights(nn.Linear(40, 20), 0.1, "2019", np.random.default_rng(0))
    sgd_steps(layer, 3, 0.1, 0.9, 1e-4, rezero=False, seed=0)
    # The last optimizer step is not undone: evaluation sees masked weights holding one update.
    assert (layer.module.weight[layer.zero_mask] != 0).all()
    layer.eval()(torch.ones(1, 40))
    assert (layer.module.weight[layer.zero_mask] != 0).all()
    layer.train()(torch.ones(1, 40))
    assert (layer.module.weight[layer.zero_mask] == 0).all()


def test_nonzero_parameter_count_subtracts_the_masked_weights():
    model = nn.Sequential(SparseWeights(nn.Linear(784, 4000), 0.1, "rezero_after_step", np.random.default_rng(0)),
                          nn.Linear(4000, 10))
    assert nonzero_parameter_count(model) == 4000 * 78 + 4000 + 4000 * 10 + 10


def test_density_must_lie_strictly_between_0_and_1():
    with pytest.raises(ValueError, match="density"):
        SparseWeights(nn.Linear(3, 2), 1.0, "2019", np.random.default_rng(0))
