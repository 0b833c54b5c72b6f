"""Named experiments for the DTG-MA claims (spec `shared/specs/dtgma.md`).

Every protocol takes keyword-only `context` (the run's `RunContext`: seed, device, data directory)
plus its parameters with the faithful defaults and returns a JSON-serialisable dict. Tables return
one `<method>_accuracy_matrix` per method, so one cached run serves every row of a table. Before each
method the torch and numpy generators are re-seeded from the run's seed, as experiments.py re-seeds
before each method (§2.2), so a method's numbers do not depend on which methods ran before it: the
methods of one stream run through the common `compare_methods`, which does that. Where a protocol
re-seeds between the parts of one experiment (`mask_mechanism`, `parameter_counts`) it calls
`context.reseed()`.
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from implementations.common.models import MultiHeadMLP, forward_on_task
from implementations.common.parameter_counts import parameter_count_outputs, trained_parameter_count
from implementations.common.prerequisites import PrerequisiteMissing
from implementations.common.run_context import RunContext
from implementations.common.streams import Task
from implementations.common.training import Method, MethodResult, Strategy, compare_methods, comparison_outputs
from implementations.dtgma import baselines, cnn, controls, data
from implementations.dtgma.model import DTGMALibraryTraining, DTGMAModel, task_adam, train_continual

SPLIT_MNIST_METHODS = ("dtgma", "adapter", "hat", "lora", "ewc", "packnet", "finetune", "derpp")
RESNET_METHODS = ("dtgma", "ewc", "derpp", "hat", "packnet", "finetune")
CONTROL_METHODS = ("dtgma", "independent_mlp", "random_projection_residual", "multihead_finetune",
                   "multihead_ewc")

# Where each source script counts parameters (spec §1.6, §2.2). This is `counted_at` of the one
# counting rule in implementations/common/parameter_counts.py.
EXPERIMENTS_PY_COUNTS_AT = "construction"  # experiments.py: a fresh model, before any task is registered
CNN_EXPERIMENTS_PY_COUNTS_AT = "after_training"  # cnn_experiments.py: the trained model
MLP_BENCHMARKS = {"split_mnist": (784, 2, 5), "split_cifar100": (3072, 10, 10), "omniglot": (784, 20, 10)}


def _adam_over_all(lr: float):
    return lambda model, task_id: torch.optim.Adam(model.parameters(), lr=lr)


def _adam_over_task(lr: float):
    return lambda model, task_id: torch.optim.Adam(model.task_parameters(task_id), lr=lr)


def _dtgma(model: DTGMAModel, tasks: Sequence[Task], lr: float, freeze_after_training: bool = True) -> Method:
    """`train_continual` as a method to compare: every task registered first, a fresh Adam per task
    over the task's own parameters, the task's modules frozen after it."""
    for task in tasks:
        model.add_task(task.task_id)
    return Method(model, DTGMALibraryTraining(freeze_after_training), task_adam(lr))


def _benchmark(name: str, data_dir: pathlib.Path, device: str, seed: int,
               options: dict) -> tuple[list[Task], dict, int]:
    """(tasks, dataset_files, input_dim) of one experiments.py benchmark."""
    if name == "split_mnist":
        tasks, files = data.split_mnist(data_dir, device, **options)
        return tasks, files, 784
    if name == "omniglot":
        tasks, files = data.omniglot(data_dir, device, split_seed=seed, **options)
        return tasks, files, 784
    if name == "split_cifar100":
        tasks, files = data.split_cifar100(data_dir, device, **options)
        return tasks, files, 3072
    raise ValueError(f"unknown benchmark {name!r}")


def _classes(tasks: Sequence[Task]) -> int:
    return len(tasks[0].classes)


def _faithful_method(method: str, tasks: list[Task], input_dim: int, *, epochs: int, lr: float, device: str) -> Method:
    """One row of experiments.py's table: the method as that script trained it (spec §2.2, §3)."""
    n_classes, n_tasks = _classes(tasks), len(tasks)
    full_batch = len(tasks[0].x_train)  # batch_size=None in train_continual_baseline: one step per epoch
    if method == "dtgma":
        return _dtgma(DTGMAModel(input_dim, 256, n_classes).to(device), tasks, lr)
    if method in ("finetune", "ewc", "packnet"):
        strategy = {"finetune": Strategy(), "ewc": baselines.FaithfulEWC(1000.0),
                    "packnet": baselines.FaithfulPackNet()}[method]
        return Method(baselines.SharedHeadMLP(input_dim, n_classes), strategy, _adam_over_all(lr),
                      batch_size=full_batch)
    if method == "hat":
        return Method(baselines.HATMLP(input_dim, n_classes, n_tasks), baselines.FaithfulHAT(epochs, 1),
                      _adam_over_all(lr), batch_size=full_batch)
    if method == "derpp":
        return Method(baselines.SharedHeadMLP(input_dim, n_classes), baselines.FaithfulDERPP(), _adam_over_all(lr),
                      batch_size=32, optimizer_per_task=False)
    if method in ("lora", "adapter"):
        model = (baselines.LoRAMLP if method == "lora" else baselines.AdapterMLP)(input_dim, n_classes, n_tasks)
        return Method(model, baselines.FreezeEncoderAfterFirstTask(), baselines.adapter_adam(lr))
    raise ValueError(f"unknown method {method!r}")


def _task_agnostic(model: DTGMAModel, tasks: Sequence[Task]) -> dict:
    """What DTG-MA can do without the task id: pick the head with the most confident softmax.

    The model has no task-inference mechanism of its own (spec §2.1); this is the simplest one.
    """
    model.eval()
    correct_task = correct_class = total = 0
    with torch.no_grad():
        for task in tasks:
            confidences, predictions = [], []
            for candidate in tasks:
                probabilities = torch.softmax(model(task.x_test, candidate.task_id), dim=1)
                confidence, prediction = probabilities.max(dim=1)
                confidences.append(confidence)
                predictions.append(prediction)
            chosen = torch.stack(confidences).argmax(dim=0)
            predicted_local = torch.stack(predictions).gather(0, chosen.unsqueeze(0)).squeeze(0)
            right_task = chosen == task.task_id
            correct_task += int(right_task.sum())
            correct_class += int((right_task & (predicted_local == task.y_test)).sum())
            total += len(task.y_test)
    return {"dtgma_task_identification_accuracy": correct_task / total,
            "dtgma_task_agnostic_accuracy": correct_class / total}


def baseline_table(*, context: RunContext, benchmark: str = "split_mnist",
                   methods: Sequence[str] = SPLIT_MNIST_METHODS, epochs: int = 30, lr: float = 1e-3,
                   batch_size: int = 64, stream_options: dict | None = None) -> dict:
    """experiments.py (spec §2.2, §3): DTG-MA and the repository's baselines on one benchmark.

    stream_options: keywords of the benchmark's stream builder in `data` (default: the faithful
    1000/100 per class for Split MNIST, the first 200 background characters split 15/5 for
    Omniglot, 450/90 per class for CIFAR-100).

    Every method also reports `<method>_parameter_count`, which is what experiments.py counted: the
    model before any task is registered. It reports `<method>_parameter_count_trained` too, every
    parameter of the trained model. Both come from implementations/common/parameter_counts.py.
    """
    device = context.device
    tasks, files, input_dim = _benchmark(benchmark, context.data_dir, device, context.seed, stream_options or {})
    results = compare_methods(
        {method: lambda method=method: _faithful_method(method, tasks, input_dim, epochs=epochs, lr=lr, device=device)
         for method in methods},
        tasks, epochs=epochs, batch_size=batch_size, seed=context.seed, device=device)
    return table_outputs(results, tasks, files, methods)


def table_outputs(results: dict[str, MethodResult], tasks: Sequence[Task], files: dict,
                  methods: Sequence[str]) -> dict:
    """What `baseline_table` returns from its methods' results (also its seed-batched form's)."""
    outputs: dict = {"dataset_files": files, "task_test_sizes": [len(t.y_test) for t in tasks],
                     **comparison_outputs(results)}
    for name, result in results.items():
        outputs.update(parameter_count_outputs(result.method.model, EXPERIMENTS_PY_COUNTS_AT, prefix=f"{name}_"))
    if "dtgma" in results:
        outputs.update(_task_agnostic(results["dtgma"].method.model, tasks))
        final = {m: float(np.mean(outputs[f"{m}_accuracy_matrix"][-1])) for m in methods}
        for method in methods:
            if method != "dtgma":
                outputs[f"dtgma_minus_{method}_accuracy"] = final["dtgma"] - final[method]
    return outputs


def _stub_tasks(n_tasks: int, input_shape: tuple[int, ...], n_classes: int, n_train: int) -> list[Task]:
    """Tasks with the right ids, class count and training-set size and no real data.

    They let the method builders of the tables build the exact models without loading a dataset.
    """
    x, y = torch.zeros(n_train, *input_shape), torch.zeros(n_train, dtype=torch.long)
    return [Task(task_id, tuple(range(n_classes)), x, y, x[:1], y[:1], labels="local") for task_id in range(n_tasks)]


def parameter_counts(*, context: RunContext) -> dict:
    """Every parameter count the claims name, by the one rule of implementations/common/parameter_counts.py.

    Each table method's model is built by the builder its table uses (`_faithful_method`,
    `_resnet_method`), with every task registered. No training happens: no method grows parameters
    while it trains. Keys:

    - `<method>_<benchmark>_parameter_count`: rule item 1, counted where the source counted.
      For the experiments.py benchmarks (split_mnist, split_cifar100, omniglot) that is the model
      as built, before any task is registered. For the ResNet table (`<method>_resnet_...`) it is
      the trained model, as cnn_experiments.py counts.
    - `<method>_<benchmark>_parameter_count_trained`: rule item 2, every parameter with all tasks
      registered.
    - `dtgma_<setting>_fresh` / `dtgma_<setting>_registered`: the same two counts for DTG-MA,
      including the Qwen and full-benchmark settings, which have no baseline table.
    - `dtgma_parameters_per_task_c2` and `dtgma_<benchmark>_registered_over_baseline_mlp`.
    - Aliases kept until the ledger names the keys above: `baseline_mlp_<b>` (= finetune, ewc,
      packnet and derpp `_<b>_parameter_count`), `lora_<b>`, `adapter_<b>` (= their
      `_parameter_count`), `hat_<b>` (= `hat_<b>_parameter_count_trained`, with the gate
      embeddings), `resnet18_mnist` (the backbone alone), `dtgma_resnet_registered`,
      `resnet_shared_head`, `resnet_hat`, `resnet_packnet` (= `<method>_resnet_parameter_count`).
    """
    outputs: dict = {}
    for benchmark, (input_dim, n_classes, n_tasks) in MLP_BENCHMARKS.items():
        tasks = _stub_tasks(n_tasks, (input_dim,), n_classes, n_train=2)
        for method in SPLIT_MNIST_METHODS:
            context.reseed()
            model = _faithful_method(method, tasks, input_dim, epochs=1, lr=1e-3, device="cpu").model
            outputs.update(parameter_count_outputs(model, EXPERIMENTS_PY_COUNTS_AT, prefix=f"{method}_{benchmark}_"))
    tasks = _stub_tasks(5, (1, 28, 28), 2, n_train=2)
    for method in RESNET_METHODS:
        context.reseed()
        model = _resnet_method(method, tasks, epochs=1, lr=1e-3, batch_size=64, device="cpu",
                               freeze_backbone_statistics=False).model
        outputs.update(parameter_count_outputs(model, CNN_EXPERIMENTS_PY_COUNTS_AT, prefix=f"{method}_resnet_"))

    for benchmark in MLP_BENCHMARKS:
        outputs[f"dtgma_{benchmark}_fresh"] = outputs[f"dtgma_{benchmark}_parameter_count"]
        outputs[f"dtgma_{benchmark}_registered"] = outputs[f"dtgma_{benchmark}_parameter_count_trained"]
    for name, (input_dim, n_classes, n_tasks, options) in {
        "qwen_8_tasks": (1536, 2, 8, {"n_tasks_max": 8}),
        "full_benchmark_cifar": (3072, 10, 10, {"hidden_dim": 512, "n_heads": 8}),
    }.items():
        model = DTGMAModel(input_dim, num_classes=n_classes, **options)
        for task_id in range(n_tasks):
            model.add_task(task_id)
        counts = parameter_count_outputs(model, EXPERIMENTS_PY_COUNTS_AT)
        outputs[f"dtgma_{name}_fresh"] = counts["parameter_count"]
        outputs[f"dtgma_{name}_registered"] = counts["parameter_count_trained"]
    per_task = DTGMAModel(784, num_classes=2)
    per_task.add_task(0)
    outputs["dtgma_parameters_per_task_c2"] = trained_parameter_count(per_task) - outputs["dtgma_split_mnist_fresh"]

    for benchmark in MLP_BENCHMARKS:
        outputs[f"baseline_mlp_{benchmark}"] = outputs[f"finetune_{benchmark}_parameter_count"]
        outputs[f"lora_{benchmark}"] = outputs[f"lora_{benchmark}_parameter_count"]
        outputs[f"adapter_{benchmark}"] = outputs[f"adapter_{benchmark}_parameter_count"]
        outputs[f"hat_{benchmark}"] = outputs[f"hat_{benchmark}_parameter_count_trained"]
        outputs[f"dtgma_{benchmark}_registered_over_baseline_mlp"] = (
            outputs[f"dtgma_{benchmark}_registered"] / outputs[f"baseline_mlp_{benchmark}"])
    outputs["resnet18_mnist"] = trained_parameter_count(cnn.ResNet18MNIST())
    outputs["dtgma_resnet_registered"] = outputs["dtgma_resnet_parameter_count"]
    outputs["resnet_shared_head"] = outputs["finetune_resnet_parameter_count"]
    outputs["resnet_hat"] = outputs["hat_resnet_parameter_count"]
    outputs["resnet_packnet"] = outputs["packnet_resnet_parameter_count"]
    return outputs


def _max_abs(tensors_a: dict[str, torch.Tensor], tensors_b: dict[str, torch.Tensor]) -> float:
    return max(float((tensors_a[name] - tensors_b[name]).abs().max()) for name in tensors_a)


def _snapshot(named: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in named.items()}


def _query_key(model: DTGMAModel, task_id: int | None = None) -> dict[str, nn.Parameter]:
    """W_Q, W_K and their biases: of every task, or of one task."""
    keys = (".query.", ".key.")
    in_task = "" if task_id is None else f".attention.{task_id}."
    return {name: p for name, p in model.named_parameters() if any(k in name for k in keys) and in_task in name}


def mask_mechanism(*, context: RunContext, epochs: int = 2, lr: float = 1e-3,
                   batch_size: int = 64, train_per_class: int = 200, test_per_class: int = 100,
                   mask_values: Sequence[float] = (-1e9, -1e4, -1.0, 1.0, 1e4, 1e9),
                   random_mask_scale: float = 1e4) -> dict:
    """Mechanism checks of spec §5.4 item 2 on a small Split MNIST run of the library loop.

    (a) output change when the registered task's mask takes finite values, and NaN at -inf;
    (b) largest |grad| of W_Q / W_K (train mode, dropout on) and their change after training;
    (d) change of the input projection and LayerNorms after training;
    (e) difference between the model and its collapsed form W_O W_V (no Q, K, softmax, mask);
    isolation without the masks' values: the same run with every mask entry set to a random finite
    value instead of 0, compared bit for bit.
    """
    device = context.device
    tasks, files = data.split_mnist(context.data_dir, device, train_per_class=train_per_class,
                                    test_per_class=test_per_class)
    context.reseed()
    model = DTGMAModel(784, 256, 2).to(device)
    for task in tasks:
        model.add_task(task.task_id)
    shared_before, query_key_before = _snapshot(model.shared_parameters()), _snapshot(_query_key(model))

    model.train()
    batch = tasks[0].x_train[:batch_size]
    nn.functional.cross_entropy(model(batch, 0), tasks[0].y_train[:batch_size]).backward()
    query_key_grad = max(float(p.grad.abs().max()) for p in _query_key(model, 0).values())
    model.zero_grad(set_to_none=True)

    context.reseed()
    result = train_continual(model, tasks, epochs=epochs, lr=lr, batch_size=batch_size, seed=context.seed,
                             device=device)
    model.eval()
    x = torch.cat([task.x_test for task in tasks])
    with torch.no_grad():
        reference = model(x, 0)
        changes = []
        for value in mask_values:
            model.set_task_mask(0, value)
            changes.append(float((model(x, 0) - reference).abs().max()))
        model.set_task_mask(0, float("-inf"))
        infinite_mask_nan = bool(torch.isnan(model(x, 0)).all())
        model.set_task_mask(0, 0.0)
        collapsed = controls.collapsed_forward(model, x, 0)

    context.reseed()
    randomised = DTGMAModel(784, 256, 2).to(device)
    for task in tasks:
        randomised.add_task(task.task_id)
    generator = context.torch_generator("random masks")  # at the run's seed
    for layer in randomised.layers:
        layer.task_masks.copy_(torch.randn(layer.task_masks.shape, generator=generator) * random_mask_scale)
    context.reseed()
    randomised_result = train_continual(randomised, tasks, epochs=epochs, lr=lr, batch_size=batch_size,
                                        seed=context.seed, device=device, freeze_after_training=False)
    identical = randomised_result["accuracy_matrix"] == result["accuracy_matrix"]
    return {
        "dataset_files": files,
        "accuracy_matrix": result["accuracy_matrix"],
        "random_mask_no_freeze_accuracy_matrix": randomised_result["accuracy_matrix"],
        "mask_values": list(mask_values),
        "finite_mask_output_changes": changes,
        "finite_mask_max_output_change": max(changes),
        "infinite_mask_output_all_nan": infinite_mask_nan,
        "query_key_max_abs_grad": query_key_grad,
        "query_key_max_abs_change_after_training": _max_abs(_snapshot(_query_key(model)), query_key_before),
        "shared_max_abs_change_after_training": _max_abs(_snapshot(model.shared_parameters()), shared_before),
        "collapsed_max_abs_logit_difference": float((collapsed - reference).abs().max()),
        "random_masks_change_accuracy_matrix": not identical,
    }


def freeze_ablation(*, context: RunContext, epochs: int = 100, lr: float = 0.01,
                    batch_size: int = 64, train_per_class: int = 1000, test_per_class: int = 200) -> dict:
    """dtgma_full_benchmark.py --benchmark ablation (spec §2.3, §1.5): freeze and no-freeze on one dataset.

    Both start from the same seed, so their parameters and matrices can be compared bit for bit.
    """
    device = context.device
    tasks, files = data.split_mnist(context.data_dir, device, train_per_class=train_per_class,
                                    test_per_class=test_per_class)
    results = compare_methods(
        {name: lambda freeze=freeze: _dtgma(DTGMAModel(784, 256, 2, n_tasks_max=len(tasks)).to(device), tasks, lr,
                                            freeze)
         for name, freeze in (("freeze", True), ("no_freeze", False))},
        tasks, epochs=epochs, batch_size=batch_size, seed=context.seed, device=device)
    freeze, no_freeze = results["freeze"], results["no_freeze"]
    return {
        "dataset_files": files,
        **comparison_outputs(results),
        "freeze_no_freeze_matrices_identical": freeze.accuracy_matrix == no_freeze.accuracy_matrix,
        "freeze_no_freeze_max_abs_parameter_difference": _max_abs(
            _snapshot(dict(freeze.method.model.named_parameters())),
            _snapshot(dict(no_freeze.method.model.named_parameters()))),
    }


def scalability(*, context: RunContext, task_counts: Sequence[int] = (5, 10, 16, 20),
                epochs: int = 50, lr: float = 0.01, batch_size: int = 64, n_train: int = 2000, n_test: int = 500,
                permutation_seed: int = 42) -> dict:
    """The "T > k" scalability test (spec §2.3): Permuted MNIST, a fresh model per T with n_tasks_max = T.

    The permutations are the original's (seed 42) for every run seed; the run seed varies the model
    initialisation, dropout and batch order.
    """
    device = context.device
    outputs: dict = {}
    for n_tasks in task_counts:
        tasks, files = data.permuted_mnist(context.data_dir, device, n_tasks=n_tasks, n_train=n_train, n_test=n_test,
                                           permutation_seed=permutation_seed)
        outputs["dataset_files"] = files
        results = compare_methods(
            {f"tasks_{n_tasks}": lambda: _dtgma(DTGMAModel(784, 256, 10, n_tasks_max=n_tasks).to(device), tasks, lr)},
            tasks, epochs=epochs, batch_size=batch_size, seed=context.seed, device=device)
        outputs.update(comparison_outputs(results))
    return outputs


def forgetting_all_benchmarks(*, context: RunContext, epochs: int = 2, lr: float = 1e-3,
                              batch_size: int = 64, permuted_tasks: int = 5) -> dict:
    """DTG-MA's forgetting on every MLP benchmark present here (Split MNIST, Omniglot, Permuted MNIST).

    `max_forgetting` is the largest of both forgetting formulas the source used, unclipped and
    clipped (spec §2.1), over the benchmarks; each matrix is kept as `<benchmark>_accuracy_matrix`.
    """
    device = context.device
    outputs: dict = {"dataset_files": {}}
    streams = {
        "split_mnist": lambda: data.split_mnist(context.data_dir, device),
        "omniglot": lambda: data.omniglot(context.data_dir, device, split_seed=context.seed),
        "permuted_mnist": lambda: data.permuted_mnist(context.data_dir, device, n_tasks=permuted_tasks),
    }
    forgetting = []
    for name, build in streams.items():
        tasks, files = build()
        outputs["dataset_files"].update(files)
        results = compare_methods({name: lambda: _dtgma(DTGMAModel(784, 256, _classes(tasks)).to(device), tasks, lr)},
                                  tasks, epochs=epochs, batch_size=batch_size, seed=context.seed, device=device)
        outputs.update(comparison_outputs(results))
        matrix = np.asarray(outputs[f"{name}_accuracy_matrix"])
        for j in range(len(tasks) - 1):
            forgetting += [matrix[j:, j].max() - matrix[-1, j], matrix[j, j] - matrix[-1, j]]
    outputs["max_forgetting"] = float(max(forgetting))
    outputs["max_abs_forgetting"] = float(max(abs(f) for f in forgetting))
    return outputs


def _control(method: str, tasks: list[Task], *, lr: float, device: str, ewc_lambda: float) -> Method:
    n_classes, n_tasks = _classes(tasks), len(tasks)
    if method == "dtgma":
        return _dtgma(DTGMAModel(784, 256, n_classes).to(device), tasks, lr)
    if method == "independent_mlp":
        return Method(controls.IndependentMLPs(784, n_classes, n_tasks), Strategy(), _adam_over_task(lr))
    if method == "random_projection_residual":
        return Method(controls.RandomProjectionResiduals(784, n_classes, n_tasks), Strategy(), _adam_over_task(lr))
    if method == "multihead_finetune":
        return Method(MultiHeadMLP(784, [256, 256], n_tasks, n_classes), Strategy(), _adam_over_all(lr))
    if method == "multihead_ewc":
        return Method(MultiHeadMLP(784, [256, 256], n_tasks, n_classes), baselines.FaithfulEWC(ewc_lambda),
                      _adam_over_all(lr))
    raise ValueError(f"unknown control {method!r}")


def task_id_controls(*, context: RunContext, methods: Sequence[str] = CONTROL_METHODS,
                     epochs: int = 30, lr: float = 1e-3, batch_size: int = 64, train_per_class: int = 1000,
                     test_per_class: int = 100, ewc_lambda: float = 1000.0) -> dict:
    """Isolation controls and a fair task-incremental comparison (spec §5.4 items 3-4) on Split MNIST.

    Every method gets a head per task, the task id at training and test time, minibatch 64, the same
    epochs and lr, and a fresh Adam per task. Controls (per-task networks) optimise only the task's
    own parameters, as DTG-MA does; fine-tuning and EWC optimise everything (EWC with the source's
    lambda, untuned). `<method>_parameter_count_trained` counts every parameter of each trained model
    (spec §5.4 item 3: counts with all tasks registered).
    """
    device = context.device
    tasks, files = data.split_mnist(context.data_dir, device, train_per_class=train_per_class,
                                    test_per_class=test_per_class)
    results = compare_methods(
        {method: lambda method=method: _control(method, tasks, lr=lr, device=device, ewc_lambda=ewc_lambda)
         for method in methods},
        tasks, epochs=epochs, batch_size=batch_size, seed=context.seed, device=device)
    outputs: dict = {"dataset_files": files, **comparison_outputs(results)}
    for name, result in results.items():  # no source table counts these: only the trained count (rule item 2)
        outputs[f"{name}_parameter_count_trained"] = trained_parameter_count(result.method.model)
    final = {m: float(np.mean(outputs[f"{m}_accuracy_matrix"][-1])) for m in methods}
    for method in methods:
        if method != "dtgma":
            outputs[f"{method}_minus_dtgma_accuracy"] = final[method] - final["dtgma"]
    return outputs


def _dtgma_cnn(tasks: list[Task], strategy: cnn.DTGMACNNTraining, *, lr: float, device: str,
               freeze_backbone_statistics: bool) -> Method:
    """train_dtgma_cnn with `strategy` (DTGMACNNTraining or one that also records): every task registered first."""
    model = cnn.DTGMAWithCNN(_classes(tasks), freeze_backbone_statistics=freeze_backbone_statistics).to(device)
    for task in tasks:
        model.dtgma.add_task(task.task_id)
    return Method(model, strategy, cnn.dtgma_cnn_adam(lr))


def _resnet_method(method: str, tasks: list[Task], *, epochs: int, lr: float, batch_size: int, device: str,
                   freeze_backbone_statistics: bool) -> Method:
    """cnn_experiments.py (spec §2.6, §3 CNN baselines): Adam lr 1e-3, batch 64, one shared head except DTG-MA."""
    n_classes, n_tasks = _classes(tasks), len(tasks)
    steps_per_epoch = math.ceil(len(tasks[0].x_train) / batch_size)
    if method == "dtgma":
        return _dtgma_cnn(tasks, cnn.DTGMACNNTraining(), lr=lr, device=device,
                          freeze_backbone_statistics=freeze_backbone_statistics)
    if method in ("finetune", "ewc", "derpp"):
        strategy = {"finetune": Strategy(), "ewc": baselines.FaithfulEWC(1000.0, fisher_samples=200),
                    "derpp": baselines.FaithfulDERPP(replay_batch=32)}[method]
        model = cnn.ResNetSharedHead(n_classes)
    elif method == "hat":
        model = cnn.ResNetHAT(n_classes, n_tasks)
        strategy = cnn.ResNetHATRegulariserOnly(epochs, steps_per_epoch)
    elif method == "packnet":
        model = cnn.ResNetExtraLayer(n_classes)
        strategy = baselines.FaithfulPackNet(layer_names=("fc",), mask_gradients=False)
    else:
        raise ValueError(f"unknown ResNet method {method!r}")
    return Method(model, strategy, _adam_over_all(lr), optimizer_per_task=False)


def resnet_table(*, context: RunContext, methods: Sequence[str] = RESNET_METHODS,
                 epochs: int = 10, lr: float = 1e-3, batch_size: int = 64, train_per_class: int = 1000,
                 test_per_class: int = 100, freeze_backbone_statistics: bool = False) -> dict:
    """cnn_experiments.py --backbone resnet (spec §2.6): 10 epochs as run (the README says 30).

    The Fine-tune / EWC / DER++ / PackNet baselines get no task id; all BatchNorm statistics drift
    in train mode, as in the original. `<method>_parameter_count` is counted on the trained model, as
    cnn_experiments.py counts, so it equals `<method>_parameter_count_trained`.
    """
    device = context.device
    tasks, files = data.split_mnist(context.data_dir, device, train_per_class=train_per_class,
                                    test_per_class=test_per_class, flatten=False)
    results = compare_methods(
        {method: lambda method=method: _resnet_method(method, tasks, epochs=epochs, lr=lr, batch_size=batch_size,
                                                      device=device,
                                                      freeze_backbone_statistics=freeze_backbone_statistics)
         for method in methods},
        tasks, epochs=epochs, batch_size=batch_size, seed=context.seed, device=device)
    outputs: dict = {"dataset_files": files, **comparison_outputs(results)}
    for name, result in results.items():
        outputs.update(parameter_count_outputs(result.method.model, CNN_EXPERIMENTS_PY_COUNTS_AT, prefix=f"{name}_"))
    return outputs


class _RecordTaskZero(cnn.DTGMACNNTraining):
    """DTG-MA+ResNet training that also keeps task 0's test predictions and BatchNorm means after task 0."""

    def __init__(self, probe: torch.Tensor):
        self.probe = probe
        self.predictions_after_task0: torch.Tensor | None = None
        self.running_means_after_task0: dict[str, torch.Tensor] = {}

    def after_task(self, model: nn.Module, task: Task) -> None:
        super().after_task(model, task)
        if task.task_id == 0:
            self.predictions_after_task0 = _predictions(model, self.probe)
            self.running_means_after_task0 = cnn.batchnorm_running_means(model.backbone)


def _predictions(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    mode = model.training
    model.eval()
    with torch.no_grad():
        predictions = forward_on_task(model, x, 0).argmax(1)
    model.train(mode)
    return predictions


def resnet_batchnorm_drift(*, context: RunContext, epochs: int = 10, lr: float = 1e-3,
                           batch_size: int = 64, train_per_class: int = 1000, test_per_class: int = 100) -> dict:
    """DTG-MA+ResNet with the backbone's BatchNorm statistics updating (as run) and frozen (spec §5.4 item 7).

    Reports both matrices, the largest running-mean drift after task 0, and how many of task 0's test
    predictions changed between right after task 0 and the end.
    """
    device = context.device
    tasks, files = data.split_mnist(context.data_dir, device, train_per_class=train_per_class,
                                    test_per_class=test_per_class, flatten=False)
    results = compare_methods(
        {name: lambda frozen=frozen: _dtgma_cnn(tasks, _RecordTaskZero(tasks[0].x_test), lr=lr, device=device,
                                                freeze_backbone_statistics=frozen)
         for name, frozen in (("bn_updating", False), ("bn_frozen", True))},
        tasks, epochs=epochs, batch_size=batch_size, seed=context.seed, device=device)
    outputs: dict = {"dataset_files": files, **comparison_outputs(results)}
    for name, result in results.items():
        model, strategy = result.method.model, result.method.strategy
        outputs[f"{name}_max_running_mean_drift"] = _max_abs(cnn.batchnorm_running_means(model.backbone),
                                                             strategy.running_means_after_task0)
        flipped = _predictions(model, tasks[0].x_test) != strategy.predictions_after_task0
        outputs[f"{name}_task0_flipped_predictions"] = int(flipped.sum())
    return outputs


def qwen_text_domains(*, context: RunContext, model_path: str | None = None,
                      n_tasks: int = 8, epochs: int = 50) -> dict:
    """dtgma_qwen25_benchmark.py (spec §2.5): needs local Qwen2.5-1.5B weights and the template sentences.

    The spec describes the 8 tasks' templates but does not list the sentences, so even with the
    weights the faithful protocol cannot be rebuilt here; both are reported as missing.
    """
    if model_path is None or not pathlib.Path(model_path).exists():
        where = "no model_path given" if model_path is None else f"{model_path} does not exist"
        raise PrerequisiteMissing(f"Qwen/Qwen2.5-1.5B weights are needed for the text-domain benchmark ({where})")
    raise PrerequisiteMissing("the text-domain benchmark's 8x8 template sentences are not in the spec; the faithful "
                              "train/test sets cannot be rebuilt")
