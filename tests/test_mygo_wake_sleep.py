"""MyGO (spec §1): network sizes, the faithful wake/sleep bugs, the as-described fix, storage, replay."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from implementations.common.datasets import DatasetMissing, resolve_data_dir
from implementations.common.models import count_parameters
from implementations.common.run_context import RunContext
from implementations.common.seeding import torch_generator
from implementations.common.streams import Task
from implementations.mygo.networks import Discriminator, Generator, NeocortexNet, SharedHeadNet
from implementations.mygo.protocols import (
    storage_outputs,
    wake_sleep_split_ag_news,
    wake_sleep_split_mnist,
)
from implementations.mygo.replay import ExemplarReplay
from implementations.mygo.wake_sleep import as_described_teacher, faithful_teacher, sleep_phase, wake_phase


def image_task(task_id: int, n: int = 12, seed: int = 0) -> Task:
    """Two separable classes of [-1, 1] images: class 1 is brighter."""
    generator = torch.Generator().manual_seed(seed + task_id)
    y = torch.randint(2, (n,), generator=generator)
    x = (torch.rand(n, 1, 28, 28, generator=generator) - 0.5 + 0.5 * y.view(-1, 1, 1, 1)).clamp(-1, 1)
    return Task(task_id, (2 * task_id, 2 * task_id + 1), x, y, x[:6].clone(), y[:6].clone(), labels="local")


def test_network_sizes_match_the_spec():
    model = NeocortexNet()
    assert count_parameters(model.features) == 406_464
    assert count_parameters(model.add_task_head(0)) == 514
    assert count_parameters(Generator()) == 109_716
    assert count_parameters(Discriminator()) == 100_869
    assert count_parameters(SharedHeadNet()) == 406_464 + 514
    images = Generator()(torch.randn(3, 64), torch.tensor([0, 1, 1]))
    assert images.shape == (3, 1, 28, 28) and images.abs().max() <= 1


def run_two_tasks(faithful: bool, seed: int = 0, sleep_steps: int = 3):
    torch.manual_seed(seed)
    model, rng = NeocortexNet(), torch_generator(seed)
    initial = {name: p.detach().clone() for name, p in model.features.named_parameters()}
    generators, records = [], []
    for task in (image_task(0, seed=seed), image_task(1, seed=seed)):
        pre_wake = None if faithful else copy.deepcopy(model)
        head_state, generator = wake_phase(model, task, epochs=1, batch_size=8, lr=1e-3, rng=rng, faithful=faithful)
        if faithful:
            teacher_for = faithful_teacher(model, task.task_id, head_state)
        else:
            teacher_for = as_described_teacher(pre_wake, copy.deepcopy(model), task.task_id)
        records.append(sleep_phase(model, teacher_for, generators + [generator], steps=sleep_steps, batch_size=8,
                                   lr=1e-4, rng=rng))
        generators.append(generator)
    unchanged = all(torch.equal(p, initial[name]) for name, p in model.features.named_parameters())
    return records, unchanged


@settings(max_examples=2, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_faithful_sleep_is_an_exact_no_op_and_features_never_train(seed):
    records, features_unchanged = run_two_tasks(faithful=True, seed=seed)
    assert features_unchanged
    assert all(r.max_loss == 0.0 and r.max_parameter_change == 0.0 for r in records)


def test_as_described_variant_trains_features_and_its_sleep_distils_something():
    records, features_unchanged = run_two_tasks(faithful=False)
    assert not features_unchanged
    assert records[1].max_loss > 0.0 and records[1].max_feature_change > 0.0


def test_storage_counts_bytes_of_uint8_data_and_fp32_generators():
    task = image_task(0, n=10)
    task.x_train = torch.round((task.x_train * 0.5 + 0.5) * 255) / 255 * 2 - 1  # exact 8-bit images
    outputs = storage_outputs([task], generator_parameters=100)
    assert outputs["generator_bytes"] == 400
    assert outputs["task_raw_bytes"] == [10 * 784 + 10]
    assert outputs["compression_vs_raw"] == pytest.approx((10 * 784 + 10) / 400)
    assert 0 < outputs["task_gzip_bytes"][0] < 10 * 784 + 10 + 100
    assert outputs["exemplars_matching_one_generator"] == 0


def test_exemplar_replay_keeps_its_budget_and_adds_a_replay_term():
    torch.manual_seed(0)
    model = NeocortexNet()
    for task_id in range(2):
        model.add_task_head(task_id)
    replay = ExemplarReplay(exemplars_per_task=5, replay_batch_size=4, rng=torch_generator(0))
    first, second = image_task(0), image_task(1)
    plain = replay.loss(model, second.x_train[:4], second.y_train[:4], second)
    replay.after_task(model, first)
    assert replay.stored_images() == 5
    with_replay = replay.loss(model, second.x_train[:4], second.y_train[:4], second)
    assert float(with_replay.detach()) != float(plain.detach())


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 4), st.integers(1, 16), st.integers(0, 2**16))
def test_exemplar_replay_loss_is_each_replayed_row_through_its_own_head(kept_tasks, batch, seed):
    """The sync-free replay term (a where per kept task, not a boolean index) is still the sum over the
    replayed rows of each row's cross-entropy through its own task's head, over the replay batch size."""
    torch.manual_seed(seed)
    model = NeocortexNet().eval()  # no dropout: the reference below recomputes the features
    for task_id in range(kept_tasks + 1):
        model.add_task_head(task_id)
    rng = torch_generator(seed)
    replay = ExemplarReplay(exemplars_per_task=3, replay_batch_size=batch, rng=rng)
    for task_id in range(kept_tasks):
        replay.after_task(model, image_task(task_id, seed=seed))
    current = image_task(kept_tasks, seed=seed)
    state = rng.get_state()
    got = replay.loss(model, current.x_train[:4], current.y_train[:4], current)

    rng.set_state(state)
    stored_x, stored_y = torch.cat(replay.x), torch.cat(replay.y)
    stored_task = [task_id for task_id, x in zip(replay.task_ids, replay.x) for _ in range(len(x))]
    picks = torch.randint(len(stored_x), (batch,), generator=rng).tolist()
    rows = [torch.nn.functional.cross_entropy(model.head(stored_task[i])(model.features(stored_x[i:i + 1])),
                                              stored_y[i:i + 1]) for i in picks]
    plain = torch.nn.functional.cross_entropy(model.head(kept_tasks)(model.features(current.x_train[:4])),
                                              current.y_train[:4])
    expected = plain + torch.stack(rows).sum() / batch
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-6), (float(got), float(expected))


def test_ag_news_is_not_run_and_names_the_missing_file(tmp_path):
    with pytest.raises(DatasetMissing) as raised:
        wake_sleep_split_ag_news(context=RunContext(0, "cpu", tmp_path))
    assert raised.value.not_run and str(tmp_path / "ag_news" / "train.csv") in str(raised.value)


def test_wake_sleep_protocol_tiny_run_repeats_old_accuracies_exactly():
    data_dir = resolve_data_dir()
    if not (data_dir / "mnist" / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"MNIST not in {data_dir}")
    torch.manual_seed(0)
    outputs = wake_sleep_split_mnist(context=RunContext(0, "cpu", data_dir), wake_epochs=1, sleep_steps=2,
                                     train_per_class=8, test_per_class=4)
    matrix = outputs["accuracy_matrix"]
    assert all(matrix[i][j] == matrix[j][j] for j in range(5) for i in range(j, 5))
    assert outputs["features_unchanged_since_init"] and outputs["sleep_max_loss"] == 0.0
    assert outputs["old_task_reads_during_wake"] == 0 and outputs["real_data_reads_during_sleep"] == 0
