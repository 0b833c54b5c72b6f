"""DER++ as the Split MNIST table runs it, checked against the spec's §3 DER++ row point by point."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from implementations.common.streams import Task
from implementations.common.training import run_stream
from implementations.dtgma import baselines
from implementations.dtgma.protocols import _faithful_method

pytestmark = pytest.mark.usefixtures("one_thread")


def tasks(n_tasks: int = 2, n: int = 40, features: int = 6) -> list[Task]:
    generator = torch.Generator().manual_seed(3)
    out = []
    for task_id in range(n_tasks):
        x = torch.randn(n, features, generator=generator)
        y = (x[:, task_id] > 0).long()
        out.append(Task(task_id, (0, 1), x, y, x[:8], y[:8], labels="local"))
    return out


def test_the_table_runs_derpp_with_minibatch_32_one_adam_and_a_500_fifo_with_alpha_beta_one_half():
    method = _faithful_method("derpp", tasks(), 6, epochs=30, lr=1e-3, device="cpu")
    assert isinstance(method.model, baselines.SharedHeadMLP)  # one shared head, no task id
    assert method.batch_size == 32 and method.optimizer_per_task is False  # one Adam for all tasks
    strategy = method.strategy
    assert (strategy.buffer_size, strategy.alpha, strategy.beta, strategy.replay_batch) == (500, 0.5, 0.5, 32)
    optimizer = method.make_optimizer(method.model, 0)
    assert isinstance(optimizer, torch.optim.Adam) and optimizer.defaults["lr"] == 1e-3
    assert optimizer.defaults["betas"] == (0.9, 0.999) and optimizer.defaults["weight_decay"] == 0


def test_loss_is_ce_plus_half_replay_ce_plus_half_logit_mse_on_one_draw_without_replacement():
    torch.manual_seed(0)
    model, derpp, task = baselines.SharedHeadMLP(6, 2), baselines.FaithfulDERPP(buffer_size=50), tasks(1)[0]
    derpp.pending = (task.x_train[:20], task.y_train[:20], torch.randn(20, 2))
    derpp.after_step(model, task)
    x, y = task.x_train[20:30], task.y_train[20:30]
    state = torch.get_rng_state()
    loss = derpp.loss(model, x, y, task)
    torch.set_rng_state(state)
    chosen = torch.randperm(20)[:20]  # min(32, count) of the 20 stored, no repeats
    replay = model(derpp.x[chosen])
    expected = (F.cross_entropy(model(x), y) + 0.5 * F.cross_entropy(replay, derpp.y[chosen])
                + 0.5 * F.mse_loss(replay, derpp.logits[chosen]))
    torch.testing.assert_close(loss, expected)
    assert len(set(chosen.tolist())) == 20


def test_first_step_has_no_replay_and_the_ring_stores_every_batch_with_its_pre_step_logits():
    torch.manual_seed(0)
    model, derpp, task = baselines.SharedHeadMLP(6, 2), baselines.FaithfulDERPP(buffer_size=50), tasks(1)[0]
    x, y = task.x_train[:8], task.y_train[:8]
    before = model(x).detach()
    torch.testing.assert_close(derpp.loss(model, x, y, task), F.cross_entropy(model(x), y))  # empty buffer
    derpp.loss(model, x, y, task).backward()
    torch.optim.SGD(model.parameters(), lr=1.0).step()
    derpp.after_step(model, task)
    assert derpp.count == 8 and torch.equal(derpp.x[:8], x) and torch.equal(derpp.y[:8], y)
    torch.testing.assert_close(derpp.logits[:8], before)  # the logits the loss used, not re-computed after the step


def test_the_buffer_sees_every_training_sample_so_a_new_task_overwrites_it_within_buffer_size_samples():
    torch.manual_seed(0)
    stream = tasks(2, n=40)
    derpp = baselines.FaithfulDERPP(buffer_size=16, replay_batch=4)
    model = baselines.SharedHeadMLP(6, 2)
    run_stream(model, derpp, stream, epochs=1, batch_size=8, seed=0, device="cpu", evaluate_untrained=False,
               make_optimizer=lambda m, t: torch.optim.Adam(m.parameters(), lr=1e-3), optimizer_per_task=False)
    task1 = {tuple(row.tolist()) for row in stream[1].x_train}
    assert derpp.count == 16 and all(tuple(row.tolist()) in task1 for row in derpp.x)
