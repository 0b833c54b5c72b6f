"""PyTorch lock masks (spec §1.7 D and F): exact freezing, vacuous script masks, protocol smoke runs."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from implementations.common.datasets import DatasetMissing, load_mnist
from implementations.common.run_context import RunContext
from implementations.common.streams import Task
from implementations.sgm import torch_masking
from implementations.sgm.protocols import gradient_masking_split, masked_forward_checksum


def _synthetic_pair(n=96, features=20, seed=0, flip=False):
    """A two-class task (the sign of feature 0, flipped if asked), its training set also its test set."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=generator)
    y = (x[:, 0] > 0).long()
    y = 1 - y if flip else y
    return Task(int(flip), (0, 1), x, y, x, y, labels="local")


def test_gradient_mask_freezes_locked_coordinates_exactly_with_a_fresh_adam():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 2))
    mask = torch_masking.GradientMask(model)
    torch_masking.train_task_adam(model, _synthetic_pair(), epochs=2, batch_size=32, lr=1e-2, mask=mask)
    mask.lock_top_gradients(0.3)
    locked, before = mask.locked().clone(), torch_masking.flat_parameters(model)
    assert abs(mask.locked_fraction() - int(0.3 * locked.numel()) / locked.numel()) < 1e-6
    torch_masking.train_task_adam(model, _synthetic_pair(flip=True), epochs=3, batch_size=32, lr=1e-2, mask=mask)
    after = torch_masking.flat_parameters(model)
    assert torch.equal(after[locked], before[locked])
    assert not torch.equal(after[~locked], before[~locked])


def test_script_block_masks_lie_inside_fc1_and_make_logits_zero():
    torch.manual_seed(0)
    model = torch_masking.MaskedMLP()
    assert sum(p.numel() for p in model.ordered_parameters()) == 669_706
    masks = torch_masking.script_block_masks(model, 5, 2048, 16)
    assert int(masks[-1].nonzero().max()) < 784 * 512  # all in fc1's weight
    model.set_mask(masks[0])
    assert torch.count_nonzero(model(torch.rand(8, 784))) == 0


def test_every_layer_masks_partition_every_tensor():
    model = torch_masking.MaskedMLP(n_in=30, hidden=20, n_out=10)
    masks = torch.stack(torch_masking.every_layer_masks(model, 5))
    assert torch.equal(masks.sum(0), torch.ones(masks.shape[1]))
    offset = 0
    for p in model.ordered_parameters():
        assert torch.all(masks[:, offset:offset + p.numel()].sum(1) > 0)
        offset += p.numel()


def test_masked_forward_training_leaves_other_tasks_bitwise_unchanged():
    torch.manual_seed(0)
    model = torch_masking.MaskedMLP(n_in=20, hidden=16, n_out=10)
    masks = torch_masking.every_layer_masks(model, 2)
    first, second = _synthetic_pair(), _synthetic_pair(flip=True)
    model.set_mask(masks[0])
    generator = torch.Generator().manual_seed(0)
    n = masks[0].numel()
    torch_masking.train_task_masked_forward(model, first, locked=torch.zeros(n, dtype=torch.bool), epochs=2,
                                            batch_size=32, lr=1e-2, generator=generator)
    digest = torch_masking.logits_sha256(model, first.x_test)
    model.set_mask(masks[1])
    torch_masking.train_task_masked_forward(model, second, locked=masks[0].bool(), epochs=2, batch_size=32,
                                            lr=1e-2, generator=generator)
    model.set_mask(masks[0])
    assert torch_masking.logits_sha256(model, first.x_test) == digest


@pytest.fixture(scope="module")
def data_dir():
    directory = Path(os.environ.get("CLAIMS_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "datasets")
    try:
        load_mnist(directory, "test")
    except DatasetMissing as missing:
        pytest.skip(str(missing))
    return directory


def test_gradient_masking_protocol_smoke(data_dir):
    out = gradient_masking_split(context=RunContext(42, "cpu", data_dir), n_tasks=2, epochs=1, max_per_task=256,
                                 max_test_per_task=256)
    assert json.loads(json.dumps(out)) == out
    assert np.array(out["accuracy_matrix"]).shape == (2, 2)
    assert out["max_abs_change_locked"] == [0.0, 0.0]
    assert [round(p) for p in out["locked_percent"]] == [10, 20]


def test_masked_forward_checksum_smoke_is_vacuous_with_script_masks(data_dir):
    out = masked_forward_checksum(context=RunContext(1234, "cpu", data_dir), n_tasks=2, max_per_task=512,
                                  max_test_per_task=300)
    assert json.loads(json.dumps(out)) == out
    assert out["hashes_equal"] and out["anchor_logits_all_zero"]
    assert out["max_abs_gradient"] == [0.0, 0.0]
    assert out["accuracy_own_mask"][1] == 0.0
    assert out["tensors_in_task_masks"] == [[0], [0]]
