"""The repository's baselines as coded (spec §3), the ResNet variant (§1.8) and the DTG-MA data helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from implementations.common.prerequisites import PrerequisiteMissing
from implementations.common.run_context import RunContext
from implementations.common.streams import Task
from implementations.common.training import run_stream
from implementations.dtgma import baselines, cnn, data
from implementations.dtgma.model import parameter_count
from implementations.dtgma.protocols import qwen_text_domains

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models run on one thread


def binary_tasks(n_tasks: int = 2, features: int = 20, n: int = 64) -> list[Task]:
    generator = torch.Generator().manual_seed(11)
    tasks = []
    for task_id in range(n_tasks):
        x = torch.randn(n, features, generator=generator)
        y = (x[:, task_id] > 0).long()
        tasks.append(Task(task_id, (0, 1), x, y, x[:16], y[:16], "local"))
    return tasks


def adam(model, task_id):
    return torch.optim.Adam(model.parameters(), lr=1e-2)


def test_packnet_leaves_no_free_weights_after_the_first_task_so_fc_layers_never_change_again():
    torch.manual_seed(0)
    model, packnet, tasks = baselines.SharedHeadMLP(20, 2), baselines.FaithfulPackNet(), binary_tasks()
    run_stream(model, packnet, tasks[:1], epochs=2, batch_size=64, make_optimizer=adam, seed=0, device="cpu")
    for name in ("fc1", "fc2"):
        assert bool((packnet.pruned[name] | packnet.frozen[name]).all())
        assert abs(packnet.pruned[name].float().mean().item() - 0.5) < 0.01
    weights = {name: model.get_submodule(name).weight.detach().clone() for name in ("fc1", "fc2")}
    classifier = model.classifier.weight.detach().clone()
    run_stream(model, packnet, tasks[1:], epochs=3, batch_size=64, make_optimizer=adam, seed=0, device="cpu")
    for name, before in weights.items():
        assert torch.equal(model.get_submodule(name).weight, before)
    assert not torch.equal(model.classifier.weight, classifier)


def test_derpp_buffer_is_a_fifo_ring_holding_only_the_latest_samples():
    derpp = baselines.FaithfulDERPP(buffer_size=5)
    for start in range(0, 12, 3):
        x = torch.arange(start, start + 3, dtype=torch.float32).unsqueeze(1)
        derpp.pending = (x, torch.zeros(3, dtype=torch.long), torch.zeros(3, 2))
        derpp.after_step(None, None)
    assert derpp.count == 5
    assert sorted(derpp.x.squeeze(1).tolist()) == [7.0, 8.0, 9.0, 10.0, 11.0]


@pytest.mark.parametrize("model_class, expected", [(baselines.LoRAMLP, 288_066), (baselines.AdapterMLP, 432_706)])
def test_lora_and_adapter_match_experiments_py_counts_and_freeze_the_encoder_after_task_0(model_class, expected):
    assert parameter_count(model_class(784, 2, 5)) == expected
    torch.manual_seed(0)
    model, tasks = model_class(20, 2, 2), binary_tasks()
    run_stream(model, baselines.FreezeEncoderAfterFirstTask(), tasks[:1], epochs=1, batch_size=16,
               make_optimizer=baselines.adapter_adam(1e-2), seed=0, device="cpu")
    encoder = [p.detach().clone() for p in (*model.fc1.parameters(), *model.fc2.parameters())]
    run_stream(model, baselines.FreezeEncoderAfterFirstTask(), tasks[1:], epochs=1, batch_size=16,
               make_optimizer=baselines.adapter_adam(1e-2), seed=0, device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(encoder, (*model.fc1.parameters(), *model.fc2.parameters())))
    assert not any(torch.count_nonzero(p) == 0 for p in model.task_modules(1))  # LoRA's B_1 left zero-init


def test_hat_masks_the_gradient_rows_of_units_earlier_tasks_use_but_not_the_biases():
    torch.manual_seed(0)
    model, tasks = baselines.HATMLP(20, 2, 2), binary_tasks()
    hat = baselines.FaithfulHAT(epochs=3, steps_per_epoch=1)
    run_stream(model, hat, tasks[:1], epochs=3, batch_size=64, make_optimizer=adam, seed=0, device="cpu")
    used = hat.previous_masks[0][0].bool()
    assert 0 < int(used.sum()) < 256 and model.scale == hat.S_MAX
    hat.before_task(model, tasks[1])
    hat.loss(model, tasks[1].x_train, tasks[1].y_train, tasks[1]).backward()
    hat.after_backward(model, tasks[1])
    assert torch.count_nonzero(model.fc1.weight.grad[used]) == 0
    assert torch.count_nonzero(model.fc1.weight.grad[~used]) > 0 and torch.count_nonzero(model.fc1.bias.grad[used]) > 0


def test_empirical_fisher_is_the_mean_squared_per_sample_gradient():
    torch.manual_seed(0)
    model, task = baselines.SharedHeadMLP(6, 3), binary_tasks(1, features=6, n=7)[0]
    fisher = baselines.empirical_fisher(model, task.x_train, task.y_train, 0, chunk=3)
    manual = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    for x, y in zip(task.x_train, task.y_train):
        model.zero_grad()
        torch.log_softmax(model(x.unsqueeze(0)), 1)[0, y].backward()
        for name, p in model.named_parameters():
            manual[name] += p.grad ** 2 / len(task.x_train)
    for name in manual:
        torch.testing.assert_close(fisher[name], manual[name])


def test_resnet_counts_match_cnn_results_resnet_md():
    dtgma = cnn.DTGMAWithCNN(2)
    for task_id in range(5):
        dtgma.dtgma.add_task(task_id)
    assert parameter_count(cnn.ResNet18MNIST()) == 11_167_680
    assert parameter_count(dtgma) == 19_190_986
    assert parameter_count(cnn.ResNetSharedHead(2)) == 11_168_706
    assert parameter_count(cnn.ResNetHAT(2, 5)) == 11_433_922
    assert parameter_count(cnn.ResNetExtraLayer(2)) == 11_431_362


@pytest.mark.parametrize("freeze_statistics", [False, True])
def test_frozen_backbone_batchnorm_statistics_move_only_without_the_control(freeze_statistics):
    torch.manual_seed(0)
    model = cnn.DTGMAWithCNN(2, freeze_backbone_statistics=freeze_statistics)
    for task_id in range(2):
        model.dtgma.add_task(task_id)
    cnn.DTGMACNNTraining().after_task(model, Task(0, (0, 1), *[torch.zeros(1)] * 4))
    assert not any(p.requires_grad for p in model.backbone.parameters())
    before = cnn.batchnorm_running_means(model.backbone)
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 1, 28, 28) * 3 + 2, 1)
    moved = max(float((cnn.batchnorm_running_means(model.backbone)[n] - m).abs().max()) for n, m in before.items())
    assert (moved == 0.0) == freeze_statistics


def test_first_per_class_takes_the_first_samples_of_each_class_in_file_order():
    labels = np.array([3, 1, 3, 1, 1, 3, 2])
    assert data.first_per_class(labels, (1, 3), 2).tolist() == [0, 1, 2, 3]
    assert data.first_per_class(labels, (2,), None).tolist() == [6]
    with pytest.raises(ValueError):
        data.first_per_class(labels, (2,), 2)


def test_legacy_permutations_start_with_the_identity_and_follow_the_legacy_seed():
    permutations = data.legacy_permutations(3, 42, n_features=10)
    assert permutations[0].tolist() == list(range(10))
    np.random.seed(42)
    assert permutations[1].tolist() == np.random.permutation(10).tolist()


def test_qwen_protocol_is_not_run_without_local_weights(tmp_path):
    with pytest.raises(PrerequisiteMissing, match="Qwen2.5-1.5B") as missing:
        qwen_text_domains(context=RunContext(0, "cpu", tmp_path))
    assert missing.value.not_run
    with pytest.raises(PrerequisiteMissing, match="does not exist"):
        qwen_text_domains(context=RunContext(0, "cpu", tmp_path), model_path=str(tmp_path / "absent"))

