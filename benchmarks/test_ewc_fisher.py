"""Speed of our EWC against a plain PyTorch EWC loop doing the same work.

Split MNIST's first two tasks (digits 0/1, then 2/3), MLP 784-400-400-10, batch 64, one epoch per
task, SGD, EWC strength 100. After each task both compute the same estimator, the mean over the
task's training samples of the squared per-sample gradient of the cross-entropy, in eval mode,
256 samples at a time. The plain loop writes out the MLP's closed form by hand: per-sample Linear
gradients are delta_n x_n^T, so their summed squares are (delta^2)^T (x^2). Ours goes through
implementations/baselines/ewc.py, which finds such layers in any model by itself.

The rounds alternate the two runs, so a change in machine load affects both alike. The ratio of
our time to the plain loop's (median and spread over rounds) is reported in the benchmark's
extra_info and printed; the target is at most 1.5x. Nothing here asserts on time.
"""

import statistics
import time

import pytest
import torch
import torch.nn.functional as F

from implementations.baselines.ewc import EWC
from implementations.common.datasets import DatasetMissing, load_mnist, resolve_data_dir
from implementations.common.models import MLP
from implementations.common.seeding import torch_generator
from implementations.common.streams import class_split
from implementations.common.training import train_task

TARGET_RATIO = 1.5
BATCH = 64
FISHER_BATCH = 256
STRENGTH = 100.0
ROUNDS = 5


@pytest.fixture(scope="module")
def two_tasks():
    try:
        train, test = load_mnist(resolve_data_dir(), "train"), load_mnist(resolve_data_dir(), "test")
    except DatasetMissing as missing:
        pytest.skip(f"Split MNIST EWC benchmark: {missing}")
    return class_split(train, test, task_classes=[(0, 1), (2, 3)], device="cpu")


def fresh_model_and_optimizer():
    torch.manual_seed(0)
    model = MLP(784, [400, 400], 10)
    return model, torch.optim.SGD(model.parameters(), lr=0.01)


def plain_fisher(model, task):
    """Mean squared per-sample gradient of the cross-entropy, by the MLP's Linear closed form."""
    model.eval()
    sums = [torch.zeros_like(p) for p in model.parameters()]
    for batch in torch.arange(len(task.x_train)).split(FISHER_BATCH):
        h, inputs, outputs = task.x_train[batch].flatten(1), [], []
        for layer in model.layers:
            if isinstance(layer, torch.nn.Linear):
                inputs.append(h)
                outputs.append(layer(h))
                h = outputs[-1]
            else:
                h = layer(h)
        deltas = torch.autograd.grad(F.cross_entropy(h, task.y_train[batch], reduction="sum"), outputs)
        for index, (x, delta) in enumerate(zip(inputs, deltas)):
            sums[2 * index] += (delta ** 2).T @ x.detach() ** 2
            sums[2 * index + 1] += (delta ** 2).sum(0)
    model.train()
    return [value / len(task.x_train) for value in sums]


def plain_run(tasks):
    model, optimizer = fresh_model_and_optimizer()
    generator = torch_generator(0)
    fishers, anchors = [], []
    for task in tasks:
        model.train()
        order = torch.randperm(len(task.x_train), generator=generator)
        for batch in order.split(BATCH):
            loss = F.cross_entropy(model(task.x_train[batch]), task.y_train[batch])
            if fishers:
                penalty = sum(((p - anchor) ** 2 * fisher).sum() for task_fisher, task_anchor in zip(fishers, anchors)
                              for p, fisher, anchor in zip(model.parameters(), task_fisher, task_anchor))
                loss = loss + 0.5 * STRENGTH * penalty
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        fishers.append(plain_fisher(model, task))
        anchors.append([p.detach().clone() for p in model.parameters()])
    return model, fishers


def harness_run(tasks):
    model, optimizer = fresh_model_and_optimizer()
    ewc, generator = EWC(STRENGTH), torch_generator(0)
    for task in tasks:
        train_task(model, ewc, task, epochs=1, batch_size=BATCH, optimizer=optimizer, generator=generator)
    return model, [list(learned.fisher.values()) for learned in ewc.learned]


def test_both_runs_compute_the_same_thing(two_tasks):
    (plain_model, plain_fishers), (model, fishers) = plain_run(two_tasks), harness_run(two_tasks)
    for plain, ours in zip(plain_model.parameters(), model.parameters()):
        assert torch.equal(plain, ours)
    for plain_task, task in zip(plain_fishers, fishers, strict=True):
        for plain, ours in zip(plain_task, task, strict=True):
            assert torch.equal(plain, ours)


@pytest.mark.benchmark(group="split-mnist-ewc-two-tasks", warmup=True)
def test_ewc_run_time_ratio(benchmark, two_tasks):
    seconds = {"plain": [], "harness": []}

    def both_runs():
        for name, run in (("plain", plain_run), ("harness", harness_run)):
            started = time.perf_counter()
            run(two_tasks)
            seconds[name].append(time.perf_counter() - started)

    benchmark.pedantic(both_runs, rounds=ROUNDS, warmup_rounds=1)
    measured = {name: times[-ROUNDS:] for name, times in seconds.items()}  # the warm-up round left out
    ratios = sorted(ours / plain for ours, plain in zip(measured["harness"], measured["plain"]))
    benchmark.extra_info.update({
        "plain_seconds": measured["plain"], "harness_seconds": measured["harness"],
        "ratio_median": statistics.median(ratios), "ratio_min": ratios[0], "ratio_max": ratios[-1],
        "target_ratio": TARGET_RATIO,
    })
    print(f"our EWC / plain EWC run time: median {statistics.median(ratios):.3f} "
          f"(min {ratios[0]:.3f}, max {ratios[-1]:.3f}, {len(ratios)} rounds; target <= {TARGET_RATIO}); "
          f"median seconds plain {statistics.median(measured['plain']):.2f}, "
          f"ours {statistics.median(measured['harness']):.2f}")
