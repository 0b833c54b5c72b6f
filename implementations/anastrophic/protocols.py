"""Named experiments for the Anastrophic Regularization claims (spec `shared/specs/anastrophic.md`).

Every protocol takes keyword-only `context` (the run's `RunContext`: seed, device, data directory and
private generators; the engine has seeded the run) plus its parameters with the script's defaults and
returns a JSON-serialisable dict. Benchmark (spec §2): MNIST normalised to [-1, 1],
Task A = digits 0-4, Task B = digits 5-9, one 10-way head, raw digit labels, no task id; Adam 1e-3,
batch 64, 3 epochs per task, a fresh Adam for Task B.
"""

from __future__ import annotations

import copy
import pathlib
import statistics
import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from implementations.common.data_access import ReadLog, unwatch, watch
from implementations.anastrophic.model import SimpleCNN, permute_hidden_units
from implementations.anastrophic.regularizer import AnastrophicRegularization, regularised_names, spectral_coherence
from implementations.baselines.ewc import EWC
from implementations.baselines.finetune import FineTuning
from implementations.baselines.l2 import L2Anchor
from implementations.common.datasets import load_mnist
from implementations.common.evaluation import accuracy_row
from implementations.common.run_context import RunContext
from implementations.common.streams import Task, class_split
from implementations.common.training import Strategy, train_steps, train_task

TASK_CLASSES = ((0, 1, 2, 3, 4), (5, 6, 7, 8, 9))
EWC_STRENGTHS = (1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0)


def two_task_split_mnist_tasks(data_dir: pathlib.Path, device: str, *, train_per_class: int | None = None,
                               test_per_class: int | None = None, subset_seed: int | None = None
                               ) -> tuple[list[Task], dict[str, str]]:
    """Task A (0-4) and Task B (5-9) with global labels, images [N, 1, 28, 28] in [-1, 1]."""
    train, test = load_mnist(data_dir, "train"), load_mnist(data_dir, "test")
    tasks = class_split(train, test, task_classes=TASK_CLASSES, labels="global", device=device, flatten=False,
                        train_per_class=train_per_class, test_per_class=test_per_class, subset_seed=subset_seed)
    for task in tasks:
        # ToTensor then Normalize(0.5, 0.5), in torchvision's order: subtract, then divide.
        task.x_train = task.x_train.sub_(0.5).div_(0.5)
        task.x_test = task.x_test.sub_(0.5).div_(0.5)
    return tasks, {**train.files, **test.files}


def coherence_term(model: nn.Module) -> float:
    """sum over the regularised tensors of (1 - Phi): R_ana's lambda part at lambda = 1."""
    parameters = dict(model.named_parameters())
    with torch.no_grad():
        return float(sum(1 - spectral_coherence(parameters[name]) for name in regularised_names(model)))


def phi_per_tensor(model: nn.Module) -> list[float]:
    parameters = dict(model.named_parameters())
    with torch.no_grad():
        return [float(spectral_coherence(parameters[name])) for name in regularised_names(model)]


def squared_distance(model: nn.Module, reference: nn.Module, names: Sequence[str]) -> float:
    current, previous = dict(model.named_parameters()), dict(reference.named_parameters())
    with torch.no_grad():
        return float(sum(((current[name] - previous[name]) ** 2).sum() for name in names))


def _matched_index(task_a_values: Sequence[float], target: float) -> int:
    """The sweep point whose Task A retention is closest to `target` (the first one on ties)."""
    return int(np.argmin([abs(value - target) for value in task_a_values]))


def _epoch_means(history: list[tuple[torch.Tensor, torch.Tensor]], epochs: int) -> tuple[list[float], list[float]]:
    steps = len(history) // epochs
    coherence = torch.stack([c for c, _ in history]).reshape(epochs, steps).mean(dim=1)
    beta = torch.stack([b for _, b in history]).reshape(epochs, steps).mean(dim=1)
    return coherence.tolist(), beta.tolist()


def two_task_split_mnist(
    *,
    context: RunContext,
    epochs: int = 3,
    batch_size: int = 64,
    lr: float = 1e-3,
    coherence_weight: float = 1.0,
    beta_weight: float = 3.0,
    l2_coefficient: float = 3.0,
    ewc_strengths: Sequence[float] = EWC_STRENGTHS,
    fisher_samples: int | None = None,
    train_per_class: int | None = None,
    test_per_class: int | None = None,
) -> dict:
    """The script's 2-task run (spec §2) with the controls of §4, all from one shared Task-A model.

    Task A is trained once (plain cross-entropy, as in the script); every method then starts Task B
    from a copy of that model with a fresh Adam and the same batch order, so differences between
    methods are paired. Methods: fine-tuning; R_ana (lambda, eta); R_ana without its beta term
    (eta = 0); L2 anchoring with coefficient c in (c/2)||dW||^2 (c = eta is R_ana's beta term);
    EWC at each strength of the sweep. L2 and EWC regularise the same tensors as R_ana (weights,
    not biases), so only the form of the penalty differs (spec §4). Reads of Task A's tensors are
    counted while each method trains Task B.
    """
    seed, device = context.seed, context.device
    subsampled = train_per_class is not None or test_per_class is not None
    (task_a, task_b), dataset_files = two_task_split_mnist_tasks(
        context.data_dir, device, train_per_class=train_per_class, test_per_class=test_per_class,
        subset_seed=seed if subsampled else None)
    task_a_reads = ReadLog()
    for name in ("x_train", "y_train", "x_test", "y_test"):
        setattr(task_a, name, watch(getattr(task_a, name), task_a_reads))
    tasks = [task_a, task_b]

    model = SimpleCNN().to(device)
    generator = context.torch_generator("batch order")
    train_task(model, FineTuning(), task_a, epochs=epochs, batch_size=batch_size,
               optimizer=torch.optim.Adam(model.parameters(), lr=lr), generator=generator)
    reads_training_task_a = task_a_reads.reads  # > 0: shows the counter sees the training loop's reads
    after_task_a = accuracy_row(model, tasks)
    batch_order_for_task_b = generator.get_state()
    names = regularised_names(model)

    permuted = copy.deepcopy(model)
    permute_hidden_units(permuted, torch.randperm(128, generator=context.torch_generator("permutation")).to(device))
    with torch.no_grad():
        logit_change = float((permuted(unwatch(task_a.x_test)) - model(unwatch(task_a.x_test))).abs().max())

    reads_before = task_a_reads.reads
    fisher_started = time.perf_counter()
    ewc_base = EWC(1.0, names, fisher_samples=fisher_samples, fisher_seed=seed)
    ewc_base.after_task(model, task_a)
    fisher_seconds = time.perf_counter() - fisher_started
    fisher_reads = task_a_reads.reads - reads_before

    strategies: dict[str, Strategy] = {
        "finetune": FineTuning(),
        "anastrophic": AnastrophicRegularization(coherence_weight, beta_weight),
        "anastrophic_no_beta": AnastrophicRegularization(coherence_weight, 0.0),
        "l2": L2Anchor(l2_coefficient, names),
    }
    for index, strength in enumerate(ewc_strengths):
        strategies[f"ewc_{index}"] = ewc_base.with_strength(strength)

    outputs: dict = {"dataset_files": dict(dataset_files), "regularised_tensors": names,
                     "task_sizes_train": [len(task_a.y_train), len(task_b.y_train)],
                     "task_a_accuracy_after_task_a": after_task_a[0]}
    for method, strategy in strategies.items():
        method_model = copy.deepcopy(model)
        if not isinstance(strategy, EWC):  # EWC's Fisher and anchor come from ewc_base, computed above
            strategy.after_task(method_model, task_a)
        generator.set_state(batch_order_for_task_b)
        reads_before = task_a_reads.reads
        started = time.perf_counter()
        train_task(method_model, strategy, task_b, epochs=epochs, batch_size=batch_size,
                   optimizer=torch.optim.Adam(method_model.parameters(), lr=lr), generator=generator)
        outputs[f"{method}_task_b_seconds"] = time.perf_counter() - started
        outputs[f"{method}_task_a_reads_during_task_b"] = task_a_reads.reads - reads_before
        after_task_b = accuracy_row(method_model, tasks)
        outputs[f"{method}_task_a_retained"], outputs[f"{method}_task_b"] = after_task_b
        outputs[f"{method}_accuracy_matrix"] = [after_task_a, after_task_b]
        if isinstance(strategy, AnastrophicRegularization):
            coherence_per_epoch, beta_per_epoch = _epoch_means(strategy.term_history, epochs)
            outputs[f"{method}_coherence_part_per_epoch"] = coherence_per_epoch
            outputs[f"{method}_beta_part_per_epoch"] = beta_per_epoch
            outputs[f"{method}_phi_after_task_b"] = phi_per_tensor(method_model)
            outputs[f"{method}_stored_floats"] = strategy.stored_floats()
            if strategy.beta_weight:
                with torch.no_grad():
                    beta_part = float(strategy.terms(method_model)[1])
                half_squared = 0.5 * beta_weight * squared_distance(method_model, strategy.previous_model, names)
                outputs[f"{method}_beta_identity_relative_error"] = abs(beta_part - half_squared) / half_squared
        if isinstance(strategy, (L2Anchor, EWC)):
            outputs[f"{method}_stored_floats"] = strategy.stored_floats()

    ewc_keys = [f"ewc_{index}" for index in range(len(ewc_strengths))]
    ewc_task_a = [outputs[f"{key}_task_a_retained"] for key in ewc_keys]
    ewc_task_b = [outputs[f"{key}_task_b"] for key in ewc_keys]
    ana_a, ana_b = outputs["anastrophic_task_a_retained"], outputs["anastrophic_task_b"]
    matched = _matched_index(ewc_task_a, ana_a)
    dominating = [a >= ana_a and b >= ana_b and (a > ana_a or b > ana_b) for a, b in zip(ewc_task_a, ewc_task_b)]
    outputs.update({
        "ewc_strengths": [float(s) for s in ewc_strengths],
        "ewc_task_a_retained_by_strength": ewc_task_a,
        "ewc_task_b_by_strength": ewc_task_b,
        "ewc_fisher_seconds": fisher_seconds,
        "ewc_fisher_task_a_reads": fisher_reads,
        "task_a_reads_while_training_task_a": reads_training_task_a,
        "matched_ewc_strength": float(ewc_strengths[matched]),
        "matched_ewc_accuracy_matrix": outputs[f"ewc_{matched}_accuracy_matrix"],
        "anastrophic_minus_matched_ewc_task_b": ana_b - ewc_task_b[matched],
        "anastrophic_minus_matched_ewc_task_a_retained": ana_a - ewc_task_a[matched],
        "ewc_strengths_dominating_anastrophic": int(sum(dominating)),
        "anastrophic_minus_best_ewc_mean_accuracy": (ana_a + ana_b) / 2 - max(
            (a + b) / 2 for a, b in zip(ewc_task_a, ewc_task_b)),
        "anastrophic_minus_l2_task_a_retained": ana_a - outputs["l2_task_a_retained"],
        "anastrophic_minus_l2_task_b": ana_b - outputs["l2_task_b"],
        "anastrophic_task_a_forgetting": after_task_a[0] - ana_a,
        "permutation_max_logit_change": logit_change,
        "permutation_coherence_term_change": abs(coherence_term(permuted) - coherence_term(model)),
        "phi_after_task_a": phi_per_tensor(model),
    })
    return outputs


def coherence_under_permutation(*, context: RunContext, probe_per_class: int = 100) -> dict:
    """Phi before and after a function-preserving permutation of fc1's hidden units (spec §1.2).

    On the freshly initialised SimpleCNN (the seed's init), probed on `probe_per_class` test images
    per digit: the logits must not change (up to float summation order) while a functional
    invariant must not change either.
    """
    test = load_mnist(context.data_dir, "test")
    (probe,) = class_split(test, test, task_classes=[tuple(range(10))], test_per_class=probe_per_class,
                           train_per_class=1, subset_seed=context.seed, device=context.device, flatten=False)
    x = probe.x_test.sub_(0.5).div_(0.5)
    model = SimpleCNN().to(context.device)
    permuted = copy.deepcopy(model)
    permute_hidden_units(permuted, torch.randperm(128, generator=context.torch_generator("permutation"))
                         .to(context.device))
    with torch.no_grad():
        logit_change = float((permuted(x) - model(x)).abs().max())
    phi_before, phi_after = phi_per_tensor(model), phi_per_tensor(permuted)
    return {
        "dataset_files": dict(test.files),
        "regularised_tensors": regularised_names(model),
        "permutation_max_logit_change": logit_change,
        "permutation_coherence_term_change": abs(coherence_term(permuted) - coherence_term(model)),
        "phi_before_permutation": phi_before,
        "phi_after_permutation": phi_after,
        "fc1_phi_relative_change": abs(phi_after[2] - phi_before[2]) / phi_before[2],
    }


def step_time(
    *,
    context: RunContext,
    rounds: int = 7,
    steps_per_round: int = 15,
    batch_size: int = 64,
    lr: float = 1e-3,
    coherence_weight: float = 1.0,
    beta_weight: float = 3.0,
    l2_coefficient: float = 3.0,
    ewc_strength: float = 100.0,
    fisher_samples: int = 512,
) -> dict:
    """Seconds per Task-B training step of fine-tuning, R_ana, L2 anchoring and EWC, in one process.

    Each method has its own model copy (anchored to the same "Task A" weights: the seed's init, as
    the cost of a step does not depend on the weights' values) and its own Adam. Rounds interleave
    the methods in a rotating order so that load from other processes falls on all of them; a
    method's step time is the median over rounds of its per-step mean. EWC's one-off Fisher pass is
    timed apart. Ratios are taken within each run.
    """
    device = context.device
    (task_a, task_b), dataset_files = two_task_split_mnist_tasks(context.data_dir, device)
    model = SimpleCNN().to(device)
    names = regularised_names(model)
    ewc = EWC(ewc_strength, names, fisher_samples=fisher_samples, fisher_seed=context.seed)
    fisher_started = time.perf_counter()
    ewc.after_task(model, task_a)
    fisher_seconds = time.perf_counter() - fisher_started
    strategies: dict[str, Strategy] = {"finetune": FineTuning(),
                                       "anastrophic": AnastrophicRegularization(coherence_weight, beta_weight),
                                       "l2": L2Anchor(l2_coefficient, names), "ewc": ewc}
    models, optimizers = {}, {}
    for method, strategy in strategies.items():
        models[method] = copy.deepcopy(model)
        if method != "ewc":
            strategy.after_task(models[method], task_a)
        optimizers[method] = torch.optim.Adam(models[method].parameters(), lr=lr)
    generator = context.torch_generator("batch order")

    def timed_steps(method: str, steps: int) -> float:
        """Seconds per step of `steps` steps on batches drawn with replacement; no task hooks run, so
        the anchors stay on "Task A" from one round to the next."""
        indices = torch.randint(len(task_b.x_train), (steps, batch_size), generator=generator).to(device)
        batches = ((task_b.x_train[batch], task_b.y_train[batch]) for batch in indices)
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        train_steps(models[method], strategies[method], task_b, batches, optimizers[method])
        if device == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - started) / steps

    methods = list(strategies)
    for method in methods:  # warm-up: first calls allocate buffers and plan FFTs
        timed_steps(method, 3)
    per_round: dict[str, list[float]] = {method: [] for method in methods}
    for round_index in range(rounds):
        shift = round_index % len(methods)
        for method in methods[shift:] + methods[:shift]:
            per_round[method].append(timed_steps(method, steps_per_round))
    seconds = {method: statistics.median(times) for method, times in per_round.items()}
    return {
        "dataset_files": dict(dataset_files),
        **{f"{method}_step_seconds": value for method, value in seconds.items()},
        "ewc_fisher_seconds": fisher_seconds,
        "anastrophic_over_l2_step_time": seconds["anastrophic"] / seconds["l2"],
        "anastrophic_over_ewc_step_time": seconds["anastrophic"] / seconds["ewc"],
        "anastrophic_over_finetune_step_time": seconds["anastrophic"] / seconds["finetune"],
        "ewc_over_l2_step_time": seconds["ewc"] / seconds["l2"],
    }
