"""`permuted_mnist_mlp` for several seeds in one pass, every seed's state stacked along a leading dimension.

The package's seed-batched forms (`FORMS`, protocol -> form), found by the runner beside the protocols:
protocols.py never imports this module, so a sequential run's code version never covers batched code.

Why: on a GPU one SGD step of these small MLPs is bound by kernel launches (about 1.5 ms per step of a
784-4000-10 MLP on an H200, microseconds of arithmetic), so stepping S seeds with the launches of one
is what makes 5+ seeds affordable. On a few CPU cores it does not pay: the arithmetic dominates there.

Each seed stays its own run, with what `permuted_mnist_mlp(seed=s, ...)` gives it:

* its permutations and data subset: the protocol's own `_permuted_tasks(seed)`;
* its initial weights and weight masks: each seed's model is built by the protocol's `_permuted_model`
  (which calls `torch.manual_seed(seed)`), and its tensors are stacked into one seed-batched network;
* its batch order: `torch_generator(seed)`, one `randperm` per epoch, as `train_task` draws it;
* its dropout: the sequential `nn.Dropout` draws from the global torch generator right after the model
  was built, and nothing else draws from it. That generator state is captured per seed, and before
  each epoch `F.dropout` itself is called on ones, once per step and layer in the sequential order,
  under that seed's state: the noise is what the sequential run multiplies by, on CPU (bernoulli) and
  on CUDA (the fused philox kernel) alike, and it is replayed batch by batch;
* its k-WTA duty cycles and boosting, its weight masks (re-zeroed after each step, or in the training
  forward for the "2019" behaviour: `SparseWeights`' own code on the stacked weight and mask) and its
  SGD state (torch's SGD over the stacked tensors: the update is elementwise, built once for all tasks).

Equality with the sequential run: the products are batched gemms whose backward mirrors `nn.Linear`'s
(`SeedBatchedLinearFunction`). With one CPU thread every output is bitwise the sequential one. With more
threads MKL may split a single product's reduction across threads while the batched product runs one
seed per thread, so sums round differently (weights a few 1e-9 apart after a smoke-size run on two
threads, outputs still equal) and over a long run a k-WTA winner can flip: compare batched and
sequential runs at one CPU thread. On CUDA, cuBLAS chooses kernels per shape and batch
count, so bitwise equality is not guaranteed there either.

Memory: besides each seed's tasks (as the sequential run holds them), one epoch's dropout noise,
seeds x training images x hidden units x 4 bytes per hidden layer (4.8 GB for 5 seeds of full MNIST at
4000 units), the current task's stacked training images and every task's stacked test images.
"""

from __future__ import annotations

import copy
import inspect
import pathlib
import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from implementations.common.models import count_parameters
from implementations.common.seed_batching import (
    DropoutStream,
    ReplayedDropout,
    SeedBatchedLinear,
    correct_counts,
    seed_batched_steps,
    summed_mean_cross_entropy,
)
from implementations.common.seeding import torch_generator
from implementations.sparse_synapses import protocols
from implementations.sparse_synapses.kwinners import KWinners, winners_mask
from implementations.sparse_synapses.models import MultiHeadSparseMLP, SparseMLP
from implementations.sparse_synapses.sparse_weights import SparseWeights, nonzero_parameter_count, rezero_weights
from implementations.sparse_synapses.strategy import make_sgd

# `evaluation.accuracy`'s chunk: the same rows go through each product as in the sequential evaluation.
_EVALUATION_BATCH = 1024


class _SeedBatchedKWinners(KWinners):
    """KWinners over (S, B, n) inputs, one duty cycle per seed; `boosted` and `update_duty_cycle` are
    KWinners' own, broadcasting over the seed dimension."""

    def __init__(self, same_layer: Sequence[KWinners]):
        first = same_layer[0]
        if any(not torch.equal(layer.boost_strength, first.boost_strength) for layer in same_layer):
            raise ValueError("the seeds' k-WTA layers must share one boost strength")
        super().__init__(first.n, first.percent_on, first.k_inference_factor, float(first.boost_strength),
                         first.boost_strength_factor, first.duty_cycle_period, first.break_ties, first.relu)
        # boost_strength stays a CPU 0-dim tensor, which multiplies device tensors as a scalar.
        self.duty_cycle = torch.stack([layer.duty_cycle for layer in same_layer]).unsqueeze(1)
        self.learning_iterations = first.learning_iterations

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.k if self.training else self.k_inference
        mask = winners_mask(self.boosted(x).flatten(0, 1), k, self.break_ties, self.relu).view_as(x)
        y = x * mask
        if self.training:
            self.update_duty_cycle((y > 0).sum(dim=1), x.shape[1])
        return y

    def copy_seed_into(self, seed_index: int, layer: KWinners) -> None:
        layer.duty_cycle.copy_(self.duty_cycle[seed_index, 0])
        layer.learning_iterations = self.learning_iterations


def _seed_batched_layer(same_layer: Sequence[nn.Module], width: int) -> nn.Module:
    """One layer of the seed-batched network from that layer of every seed's model."""
    first = same_layer[0]
    if isinstance(first, nn.Flatten):
        return nn.Identity()  # the tasks' rows are flat already; Flatten would merge seeds and batch
    if isinstance(first, nn.Linear):
        return SeedBatchedLinear(same_layer)
    if isinstance(first, SparseWeights):
        # SparseWeights' own forward (the "2019" re-zeroing) and rezero_weights (the strategy's
        # after_step) then apply unchanged to the stacked weight and mask.
        masked = copy.deepcopy(first)
        masked.module = SeedBatchedLinear([layer.module for layer in same_layer])
        masked.zero_mask = torch.stack([layer.zero_mask for layer in same_layer])
        return masked
    if isinstance(first, KWinners):
        return _SeedBatchedKWinners(same_layer)
    if isinstance(first, nn.ReLU):
        return nn.ReLU()
    if isinstance(first, nn.Dropout):
        return ReplayedDropout(first.p, (width,))
    raise NotImplementedError(f"no seed-batched version of {type(first).__name__}")


def _seed_batched_sequence(layer_lists: Sequence[Sequence[nn.Module]]) -> nn.Sequential:
    """The same layers of every seed's model (one list per seed), each seed's tensors stacked along
    dimension 0."""
    layers: list[nn.Module] = []
    width = 0  # units coming out of the last linear layer: the shape of a dropout's noise
    for same_layer in zip(*layer_lists):
        layer = _seed_batched_layer(same_layer, width)
        width = next((linear.weight.shape[1] for linear in layer.modules() if isinstance(linear, SeedBatchedLinear)),
                     width)
        layers.append(layer)
    return nn.Sequential(*layers)


def _seed_batched_mlp(models: Sequence[SparseMLP]) -> nn.Sequential:
    """The models' trunk layers and classifier, each seed's tensors stacked along dimension 0."""
    if any(type(model) is not SparseMLP for model in models):
        raise NotImplementedError("seed batching is implemented for SparseMLP only")
    return _seed_batched_sequence([_layers_of(model) for model in models])


class _SeedBatchedMultiHead(nn.Module):
    """MultiHeadSparseMLP for every seed: the stacked trunk, and each head stacked over the seeds as a
    parameter of its own (a head the current task does not use gets no gradient, so the optimizer skips
    it, as in the sequential run; `heads` as the faithful optimizer's parameter filter expects)."""

    def __init__(self, models: Sequence[MultiHeadSparseMLP]):
        super().__init__()
        if any(type(model) is not MultiHeadSparseMLP for model in models):
            raise NotImplementedError("multi-head seed batching is implemented for MultiHeadSparseMLP only")
        self.trunk = _seed_batched_sequence([list(model.trunk) for model in models])
        self.heads = nn.ModuleList(SeedBatchedLinear([model.heads[head] for model in models])
                                   for head in range(len(models[0].heads)))

    def forward(self, x: torch.Tensor, task_id: int) -> torch.Tensor:
        return self.heads[task_id](self.trunk(x))


def _forward(net: nn.Module, x: torch.Tensor, task_id: int) -> torch.Tensor:
    """The batched net on task `task_id`'s inputs (the task id picks the head where there are heads)."""
    return net(x, task_id) if isinstance(net, _SeedBatchedMultiHead) else net(x)


def _layers_of(model: SparseMLP) -> list[nn.Module]:
    return [*model.trunk, model.classifier]


def _copy_seed_into(net: nn.Sequential, seed_index: int, model: SparseMLP) -> None:
    """Write seed `seed_index`'s trained state back into its own model."""
    for batched, layer in zip(net, _layers_of(model)):
        if isinstance(batched, SparseWeights):
            batched.module.copy_seed_into(seed_index, layer.module)
        elif isinstance(batched, (SeedBatchedLinear, _SeedBatchedKWinners)):
            batched.copy_seed_into(seed_index, layer)


@torch.no_grad()
def _accuracy_rows(net: nn.Module, test_sets: Sequence[tuple[torch.Tensor, torch.Tensor]],
                   task_ids: Sequence[int] | None = None) -> list[list[float]]:
    """Per seed, test accuracy on every task (evaluation.accuracy_row, one host read for all of it);
    `task_ids`: each test set's task id, for a multi-head net."""
    net.eval()
    seeds = test_sets[0][0].shape[0]
    task_ids = range(len(test_sets)) if task_ids is None else task_ids
    correct = torch.zeros(seeds, len(test_sets), dtype=torch.int64, device=test_sets[0][1].device)
    for task_index, ((x, y), task_id) in enumerate(zip(test_sets, task_ids)):
        correct[:, task_index] = correct_counts(lambda rows: _forward(net, rows, task_id), x, y, _EVALUATION_BATCH)
    net.train()
    sizes = [y.shape[1] for _, y in test_sets]
    return [[count / size for count, size in zip(row, sizes)] for row in correct.tolist()]


def _stacked(same_task_lists) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per task, every seed's test images and labels stacked along dimension 0."""
    return [(torch.stack([task.x_test for task in same_task]), torch.stack([task.y_test for task in same_task]))
            for same_task in zip(*same_task_lists)]


def _train(net: nn.Sequential, optimizer: torch.optim.Optimizer, seed_tasks, seeds: Sequence[int],
           dropout_streams: Sequence[DropoutStream], *, epochs: int, batch_size: int, after_task=None) -> None:
    """train_task over the stream for every seed at once (each seed's batch order from its own
    generator, as run_stream and the tuned-rate search draw it); `after_task()` after each task."""
    generators = [torch_generator(seed) for seed in seeds]
    dropouts = [layer for layer in net.modules() if isinstance(layer, ReplayedDropout)]  # in forward order
    net.train()
    for task_index in range(len(seed_tasks[0])):
        task_id = seed_tasks[0][task_index].task_id
        x_train = torch.stack([tasks[task_index].x_train for tasks in seed_tasks])
        y_train = torch.stack([tasks[task_index].y_train for tasks in seed_tasks])
        for x, y in seed_batched_steps(x_train, y_train, generators, dropout_streams, dropouts, epochs=epochs,
                                       batch_size=batch_size):
            loss = summed_mean_cross_entropy(_forward(net, x, task_id), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            rezero_weights(net)  # SparseSynapses.after_step
        if after_task is not None:
            after_task()


def _train_and_test(net: nn.Sequential, optimizer: torch.optim.Optimizer, seed_tasks, seeds: Sequence[int],
                    dropout_streams: Sequence[DropoutStream], *, epochs: int,
                    batch_size: int) -> list[list[list[float]]]:
    """run_stream for every seed at once; returns each seed's accuracy matrix."""
    test_sets = _stacked(seed_tasks)
    matrices: list[list[list[float]]] = [[] for _ in seeds]

    task_ids = [task.task_id for task in seed_tasks[0]]

    def record_row() -> None:
        for matrix, row in zip(matrices, _accuracy_rows(net, test_sets, task_ids)):
            matrix.append(row)

    _train(net, optimizer, seed_tasks, seeds, dropout_streams, epochs=epochs, batch_size=batch_size,
           after_task=record_row)
    return matrices


def _stacked_models(arm: str, config, seeds: Sequence[int], device: str, **shape) -> tuple[list, list]:
    """Each seed's model as the protocol builds it, and its dropout stream captured right after."""
    models, dropout_streams = [], []
    for seed in seeds:
        models.append(protocols._permuted_model(arm, config, architecture="mlp", conv_channels=(), fc_units=0,
                                                seed=seed, device=device, **shape))
        dropout_streams.append(DropoutStream(torch.device(device)))
    return models, dropout_streams


def _add_gains(seed_outputs: dict, arms: Sequence[str]) -> None:
    """The gains `_run_arms` adds after its arms, in its order (protocols.py keeps its own copy inline:
    editing it would change every sequential sparse run's code version)."""
    for arm in arms:
        if arm != "dense":
            seed_outputs[f"{arm}_gain"] = (seed_outputs[f"{arm}_final_average_accuracy"]
                                           - seed_outputs["dense_final_average_accuracy"])
    if {"kwinners_weight_mask", "dense_matched_nonzero"} <= set(arms):
        seed_outputs["kwinners_weight_mask_minus_dense_matched_nonzero"] = (
            seed_outputs["kwinners_weight_mask_final_average_accuracy"]
            - seed_outputs["dense_matched_nonzero_final_average_accuracy"])


def permuted_mnist_mlp_seeds(*, seeds: Sequence[int], device: str, data_dir: pathlib.Path, **params) -> list[dict]:
    """Same outputs as [permuted_mnist_mlp(seed=s, device=device, data_dir=data_dir, **params) for s in seeds],
    every arm trained for all seeds in one pass (module docstring). Every arm is batched.

    `<arm>_seconds` is the arm's batched wall time (training and the accuracy matrix, as in the
    sequential run) divided by the number of seeds.
    """

    # The sequential protocol's defaults, and its TypeError for an unknown parameter.
    arguments = inspect.signature(protocols.permuted_mnist_mlp).bind_partial(**params)
    arguments.apply_defaults()
    settings = arguments.arguments
    if not seeds:
        return []
    arms = settings["arms"]
    if "dense" not in arms:
        raise ValueError("the gains are measured against the 'dense' arm: include it in `arms`")
    seed_tasks, outputs = [], []
    for seed in seeds:
        tasks, _, files = protocols._permuted_tasks(data_dir, seed, device, settings["n_tasks"],
                                                    settings["train_size"], settings["test_size"])
        seed_tasks.append(tasks)
        outputs.append({"dataset_files": files, "architecture": "mlp", "n_tasks": settings["n_tasks"],
                        "train_images_per_task": len(tasks[0].y_train), "test_images_per_task": len(tasks[0].y_test)})
    for arm in arms:
        # What permuted_mnist_mlp hands to _permuted_mnist_arms for an MLP (no conv settings).
        config = protocols.arm_config(
            arm, architecture="mlp", percent_on_fc=settings["percent_on_fc"], percent_on_conv=0.1,
            weight_density_fc=settings["weight_density_fc"], weight_density_conv=None,
            k_inference_factor=settings["k_inference_factor"], boost_strength=settings["boost_strength"],
            boost_strength_factor=settings["boost_strength_factor"], duty_cycle_period=settings["duty_cycle_period"],
            mask_behaviour=settings["mask_behaviour"])
        models, dropout_streams = _stacked_models(
            arm, config, seeds, device, hidden_units=settings["hidden_units"], hidden_layers=settings["hidden_layers"],
            weight_density_fc=settings["weight_density_fc"], dropout=settings["dropout"])
        started = time.perf_counter()
        net = _seed_batched_mlp(models)
        # One SGD over the stacked tensors, built once for all tasks: its update is elementwise.
        optimizer = make_sgd(lr=settings["lr"], momentum=settings["momentum"], nesterov=settings["nesterov"],
                             weight_decay=settings["weight_decay"])(net, 0)
        matrices = _train_and_test(net, optimizer, seed_tasks, seeds, dropout_streams, epochs=settings["epochs"],
                                   batch_size=settings["batch_size"])
        seconds = (time.perf_counter() - started) / len(seeds)
        for seed_index, (model, tasks, matrix, seed_outputs) in enumerate(zip(models, seed_tasks, matrices, outputs)):
            _copy_seed_into(net, seed_index, model)
            seed_outputs[f"{arm}_seconds"] = seconds
            seed_outputs[f"{arm}_accuracy_matrix"] = matrix
            seed_outputs[f"{arm}_final_average_accuracy"] = float(np.mean(matrix[-1]))
            seed_outputs[f"{arm}_final_average_accuracy_published_scale"] = float(
                np.mean(protocols._published_scale_row(model, tasks, matrix[-1], settings["batch_size"])))
            seed_outputs[f"{arm}_parameter_count"] = count_parameters(model)
            seed_outputs[f"{arm}_nonzero_parameter_count"] = nonzero_parameter_count(model)
    for seed_outputs in outputs:
        _add_gains(seed_outputs, arms)
    return outputs


def permuted_mnist_mlp_tuned_lr_seeds(*, seeds: Sequence[int], device: str, data_dir: pathlib.Path,
                                     **params) -> list[dict]:
    """Same outputs as [permuted_mnist_mlp_tuned_lr(seed=s, device=device, data_dir=data_dir, **params)
    for s in seeds]: each (arm, learning rate) of the search trains all seeds in one pass, then scores
    them on the validation and test tasks once, at the end of the stream, as the sequential search does."""
    arguments = inspect.signature(protocols.permuted_mnist_mlp_tuned_lr).bind_partial(**params)
    arguments.apply_defaults()
    settings = arguments.arguments
    learning_rates, shared_lr = settings["learning_rates"], settings["shared_lr"]
    if shared_lr not in learning_rates:
        raise ValueError(f"shared_lr {shared_lr} must be one of the learning_rates {list(learning_rates)}")
    if not seeds:
        return []
    seed_tasks, seed_validation, outputs = [], [], []
    for seed in seeds:
        tasks, validation_tasks, files = protocols._permuted_tasks(
            data_dir, seed, device, settings["n_tasks"], settings["train_size"], settings["test_size"],
            settings["validation_size"])
        seed_tasks.append(tasks)
        seed_validation.append(validation_tasks)
        outputs.append({"dataset_files": files, "learning_rates": list(learning_rates),
                        "train_images_per_task": len(tasks[0].y_train)})
    test_sets, validation_sets = _stacked(seed_tasks), _stacked(seed_validation)
    arms = settings["arms"]
    for arm in arms:
        # What permuted_mnist_mlp_tuned_lr builds for each arm.
        config = protocols.arm_config(
            arm, architecture="mlp", percent_on_fc=settings["percent_on_fc"], percent_on_conv=0.1,
            weight_density_fc=0.1, weight_density_conv=None, k_inference_factor=1.0,
            boost_strength=settings["boost_strength"], boost_strength_factor=1.0,
            duty_cycle_period=settings["duty_cycle_period"], mask_behaviour="rezero_after_step")
        validation_scores: list[list[float]] = [[] for _ in seeds]
        test_scores: list[list[float]] = [[] for _ in seeds]
        for lr in learning_rates:
            models, dropout_streams = _stacked_models(
                arm, config, seeds, device, hidden_units=settings["hidden_units"],
                hidden_layers=settings["hidden_layers"], weight_density_fc=0.1, dropout=settings["dropout"])
            net = _seed_batched_mlp(models)
            optimizer = make_sgd(lr=lr, momentum=settings["momentum"], nesterov=settings["nesterov"],
                                 weight_decay=settings["weight_decay"])(net, 0)
            _train(net, optimizer, seed_tasks, seeds, dropout_streams, epochs=settings["epochs"],
                   batch_size=settings["batch_size"])
            for scores, rows in ((validation_scores, _accuracy_rows(net, validation_sets)),
                                 (test_scores, _accuracy_rows(net, test_sets))):
                for seed_scores, row in zip(scores, rows):
                    seed_scores.append(float(np.mean(row)))
        for seed_outputs, validation, test in zip(outputs, validation_scores, test_scores):
            chosen = int(np.argmax(validation))  # the first of equal scores, as the sequential search
            seed_outputs[f"{arm}_validation_accuracy_by_lr"] = validation
            seed_outputs[f"{arm}_test_accuracy_by_lr"] = test
            seed_outputs[f"{arm}_tuned_lr"] = float(learning_rates[chosen])
            seed_outputs[f"{arm}_tuned_final_average_accuracy"] = test[chosen]
            seed_outputs[f"{arm}_shared_lr_final_average_accuracy"] = test[list(learning_rates).index(shared_lr)]
    for seed_outputs in outputs:
        for arm in arms:
            if arm != "dense":
                seed_outputs[f"{arm}_tuned_gain"] = (seed_outputs[f"{arm}_tuned_final_average_accuracy"]
                                                     - seed_outputs["dense_tuned_final_average_accuracy"])
                seed_outputs[f"{arm}_shared_lr_gain"] = (seed_outputs[f"{arm}_shared_lr_final_average_accuracy"]
                                                         - seed_outputs["dense_shared_lr_final_average_accuracy"])
    return outputs


def split_mnist_task_incremental_seeds(*, seeds: Sequence[int], device: str, data_dir: pathlib.Path,
                                       **params) -> list[dict]:
    """Same outputs as [split_mnist_task_incremental(seed=s, device=device, data_dir=data_dir, **params)
    for s in seeds]: each arm trains all seeds' multi-head MLPs in one pass (heads as `heads` says:
    the faithful optimizer never sees heads 1..). `<arm>_seconds` is the batch's time per seed."""
    arguments = inspect.signature(protocols.split_mnist_task_incremental).bind_partial(**params)
    arguments.apply_defaults()
    settings = arguments.arguments
    trained = protocols._trained_parameters(settings["heads"])
    if not seeds:
        return []
    arms = settings["arms"]
    if "dense" not in arms:
        raise ValueError("the gains are measured against the 'dense' arm: include it in `arms`")
    torch_device = torch.device(device)
    train, test = protocols.load_mnist(data_dir, "train"), protocols.load_mnist(data_dir, "test")
    subsampled = settings["train_per_class"] or settings["test_per_class"]
    seed_tasks = [protocols.class_split(train, test, classes_per_task=2, train_per_class=settings["train_per_class"],
                                        test_per_class=settings["test_per_class"],
                                        subset_seed=seed if subsampled else None, device=device)
                  for seed in seeds]
    outputs = [{"dataset_files": {**train.files, **test.files}, "heads": settings["heads"],
                "train_images_per_task": [len(task.y_train) for task in tasks]} for tasks in seed_tasks]
    for arm in arms:
        # What split_mnist_task_incremental's build(arm) makes.
        config = protocols.arm_config(
            arm, architecture="mlp", percent_on_fc=settings["percent_on_fc"], percent_on_conv=0.1,
            weight_density_fc=settings["weight_density_fc"], weight_density_conv=None,
            k_inference_factor=settings["k_inference_factor"], boost_strength=settings["boost_strength"],
            boost_strength_factor=1.0, duty_cycle_period=settings["duty_cycle_period"],
            mask_behaviour=settings["mask_behaviour"])
        models, dropout_streams = [], []
        for seed, tasks in zip(seeds, seed_tasks):
            torch.manual_seed(seed)
            models.append(MultiHeadSparseMLP(
                784, [settings["hidden_units"]] * settings["hidden_layers"], 10, len(tasks), settings["dropout"],
                config, np.random.default_rng([seed, protocols._MASK_STREAM])).to(device))
            dropout_streams.append(DropoutStream(torch_device))
        started = time.perf_counter()
        net = _SeedBatchedMultiHead(models)
        optimizer = make_sgd(lr=settings["lr"], momentum=settings["momentum"], nesterov=settings["nesterov"],
                             weight_decay=settings["weight_decay"], trained=trained)(net, 0)
        matrices = _train_and_test(net, optimizer, seed_tasks, seeds, dropout_streams, epochs=settings["epochs"],
                                   batch_size=settings["batch_size"])
        seconds = (time.perf_counter() - started) / len(seeds)
        for model, matrix, seed_outputs in zip(models, matrices, outputs):
            seed_outputs[f"{arm}_seconds"] = seconds
            seed_outputs[f"{arm}_accuracy_matrix"] = matrix
            seed_outputs[f"{arm}_final_average_accuracy"] = float(np.mean(matrix[-1]))
            seed_outputs[f"{arm}_parameter_count"] = count_parameters(model)  # the masks fix both counts
            seed_outputs[f"{arm}_nonzero_parameter_count"] = nonzero_parameter_count(model)
    for seed_outputs in outputs:
        _add_gains(seed_outputs, arms)
    return outputs


FORMS = {
    "implementations.sparse_synapses.protocols:permuted_mnist_mlp": permuted_mnist_mlp_seeds,
    "implementations.sparse_synapses.protocols:permuted_mnist_mlp_tuned_lr": permuted_mnist_mlp_tuned_lr_seeds,
    "implementations.sparse_synapses.protocols:split_mnist_task_incremental": split_mnist_task_incremental_seeds,
}
