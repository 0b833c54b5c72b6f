"""The experiments' models, the training strategy and the protocol helpers (synthetic data, no dataset files)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from implementations.common.models import count_parameters
from implementations.common.streams import Task
from implementations.common.training import run_stream
from implementations.sparse_synapses.kwinners import KWinners, KWinners2d
from implementations.sparse_synapses.models import MultiHeadSparseMLP, SparseCNN, SparseMLP, SparsityConfig
from implementations.sparse_synapses.protocols import (
    _published_scale_row,
    _trained_parameters,
    arm_config,
    matched_width,
    mlp_parameter_count,
)
from implementations.sparse_synapses.sparse_weights import SparseWeights, nonzero_parameter_count
from implementations.sparse_synapses.strategy import SparseSynapses, make_sgd

SHARED = dict(architecture="mlp", percent_on_fc=0.25, percent_on_conv=0.1, weight_density_fc=0.3,
              weight_density_conv=None, k_inference_factor=1.0, boost_strength=1.0, boost_strength_factor=1.0,
              duty_cycle_period=1000, mask_behaviour="rezero_after_step")


def build(arm: str, seed: int = 0, hidden=(16,)) -> SparseMLP:
    torch.manual_seed(seed)
    return SparseMLP(12, list(hidden), 4, 0.5, arm_config(arm, **SHARED), np.random.default_rng(seed))


def synthetic_tasks(n_tasks: int = 3, n: int = 64) -> list[Task]:
    generator = torch.Generator().manual_seed(7)
    tasks = []
    for task_id in range(n_tasks):
        x_train, x_test = torch.randn(n, 12, generator=generator), torch.randn(n // 2, 12, generator=generator)
        label = lambda x: (x[:, task_id] > 0).long() + 2 * (x[:, task_id + 1] > 0).long()  # noqa: E731
        tasks.append(Task(task_id, (0, 1, 2, 3), x_train, label(x_train), x_test, label(x_test)))
    return tasks


def test_parameter_counts_of_the_spec():
    assert mlp_parameter_count(784, [4000], 10) == 3_180_010
    assert mlp_parameter_count(784, [4000, 4000], 10) == 19_184_010
    assert count_parameters(SparseCNN((1, 28, 28), [64], 5, 512, 10, 0.5, SparsityConfig(),
                                      np.random.default_rng(0))) == 64 * 25 + 64 + 36_864 * 512 + 512 + 5130


def test_k_of_the_published_networks():
    assert KWinners(4000, 0.001).k == 4
    assert KWinners(512, 0.05).k == 26
    assert KWinners2d(64, 0.05, local=True).k == 3  # the 2.344 % activity of spec §3.4: 3/64 x 0.5


def test_arms_start_from_the_same_weights_before_masking():
    dense, masked = build("dense"), build("kwinners_weight_mask")
    dense_weight, masked_layer = dense.trunk[1].weight, masked.trunk[1]
    assert isinstance(masked_layer, SparseWeights)
    kept = ~masked_layer.zero_mask
    assert torch.equal(dense_weight[kept], masked_layer.module.weight[kept])
    assert torch.equal(dense.classifier.weight, masked.classifier.weight)


def test_the_published_sparse_mlp_has_no_relu_and_no_mask():
    layers = [type(m).__name__ for m in build("sparse").trunk]
    assert layers == ["Flatten", "Linear", "KWinners", "Dropout"]
    assert [type(m).__name__ for m in build("weight_mask_only").trunk] == ["Flatten", "SparseWeights", "ReLU",
                                                                           "Dropout"]
    assert build("kwinners_no_boost").trunk[2].boost_strength.item() == 0.0


def test_matched_width_is_the_closest_dense_parameter_count():
    target = nonzero_parameter_count(build("kwinners_weight_mask"))
    width = matched_width(target, 12, 1, 4)
    gaps = [abs(mlp_parameter_count(12, [w], 4) - target) for w in (width - 1, width, width + 1)]
    assert gaps[1] == min(gaps)


def test_training_keeps_masked_weights_at_zero_and_the_optimizer_spans_the_tasks():
    model = build("kwinners_weight_mask")
    optimizers = []

    def make_optimizer(model, task_id):
        optimizers.append(make_sgd(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)(model, task_id))
        return optimizers[-1]

    results = run_stream(model, SparseSynapses(), synthetic_tasks(), epochs=2, batch_size=16,
                         make_optimizer=make_optimizer, seed=0, device="cpu", evaluate_untrained=False,
                         optimizer_per_task=False)
    assert len(optimizers) == 1
    layer = model.trunk[1]
    assert (layer.module.weight[layer.zero_mask] == 0).all()
    assert (layer.module.weight[~layer.zero_mask] != 0).all()
    assert len(results["accuracy_matrix"]) == 3


def test_faithful_heads_leave_every_head_after_the_first_untrained():
    tasks = synthetic_tasks()
    for heads, expect_trained in (("faithful", False), ("trained", True)):
        torch.manual_seed(0)
        model = MultiHeadSparseMLP(12, [16], 4, len(tasks), 0.5, arm_config("dense", **SHARED),
                                   np.random.default_rng(0))
        initial = [head.weight.clone() for head in model.heads]
        run_stream(model, SparseSynapses(), tasks, epochs=1, batch_size=16,
                   make_optimizer=make_sgd(lr=0.1, momentum=0.9, nesterov=False, weight_decay=0.0,
                                           trained=_trained_parameters(heads)),
                   seed=0, device="cpu", evaluate_untrained=False, optimizer_per_task=False)
        assert not torch.equal(model.heads[0].weight, initial[0])
        for head, start in zip(model.heads[1:], initial[1:]):
            assert torch.equal(head.weight, start) != expect_trained


def test_published_scale_counts_the_padded_examples_over_the_unpadded_size():
    """Spec §3.5: the test set is padded by prepending its first (batch - N mod batch) examples, and the
    published numbers divide the padded correct count by N."""

    class AlwaysZero(torch.nn.Module):
        def forward(self, x):
            return torch.stack([torch.ones(len(x)), torch.zeros(len(x))], dim=1)

    y = torch.tensor([0, 0, 1, 1, 1])  # batch 4: pad = 3, the first three examples (two of them right)
    task = Task(0, (0, 1), torch.zeros(5, 2), y, torch.zeros(5, 2), y)
    assert _published_scale_row(AlwaysZero(), [task], [2 / 5], batch_size=4) == [(2 + 2) / 5]
    assert _published_scale_row(AlwaysZero(), [task], [2 / 5], batch_size=5) == [2 / 5]


def test_a_layer_with_no_winner_is_refused():
    with pytest.raises(ValueError, match="percent_on"):
        KWinners(100, 0.004)  # round(0.4) = 0 winners
    with pytest.raises(ValueError, match="percent_on"):
        KWinners2d(4, 0.05, local=True)
