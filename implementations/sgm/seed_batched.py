"""`gradient_masking_split` for several seeds in one pass: every seed's two MLPs stacked along a leading dimension.

The package's seed-batched forms (`FORMS`, protocol -> form), found by the runner beside the protocols:
protocols.py never imports this module, so a sequential run's code version never covers batched code.

Why: one Adam step of the 784-1024-1024-2 MLP is bound by kernel launches on a GPU, so stepping all the
seeds' baseline and SGM models with the launches of one model is what makes several seeds affordable.

Each seed stays its own run, with what `gradient_masking_split(context=c, ...)` gives it for the run context
`c` of seed s, after the engine's `c.reseed()`:

* its tasks: the digit pairs do not depend on the seed, so one copy serves every seed;
* its initial weights: per seed, its context's `reseed()` and then the baseline and the SGM model built as
  the protocol builds them, from the global torch generator (`pair_tasks`, which the protocol calls in
  between, draws nothing);
* its batch orders: the sequential run draws them with `torch.randperm` on the global generator, which
  nothing else draws from after the two models are built: per task, the baseline's epochs, then the SGM
  model's. The global generator's state is copied per seed right after its models are built, and at the
  start of each task that copy draws the task's permutations in the same order (drawn a task ahead
  rather than an epoch ahead: nothing draws in between, so the numbers are the same);
* its optimizer: a fresh Adam per task over the stacked tensors (Adam's update is elementwise, so each
  seed's slice has its own state);
* its gradient mask: a flat {0,1} mask per seed, multiplying the SGM model's gradients (the baselines'
  rows of the stacked mask stay 1: multiplying by 1 changes no bit); after each task the top-|grad|
  entries of the last minibatch are locked seed by seed, with `torch.topk` on that seed's own flat 1-D
  gradient, exactly the tensor `GradientMask.lock_top_gradients` ranks (so ties pick the same indices);
* its evaluations: `torch_masking.accuracy`'s chunks of EVAL_CHUNK rows.

Members of the stacked network: index i < S is seed i's baseline, S + i its SGM model (S seeds).

Batched only for `dataset="mnist"` (the MLP). For "cifar10" (a CNN) each seed falls back on the
sequential protocol, after its own context's `reseed()`: stacking convolutions as grouped ones would
change the convolution algorithms and with them the last bits.

Equality with the sequential run: the products are batched gemms whose backward mirrors `nn.Linear`'s
(`implementations.common.seed_batching`). With one CPU thread every output is bitwise the sequential
one. With more threads MKL may split one product's reduction in another order, and on CUDA cuBLAS picks
kernels per shape and batch count: the last bits of a gradient can then differ, and with them, rarely,
which parameters top-k locks or which way an accuracy's arg-max falls.

Memory: the task data once; per member the parameters, their gradients, Adam's two moments and the mask
(about 37 MB a member, two members a seed); an evaluation chunk's activations, members x 2048 x 1024 floats.
"""

from __future__ import annotations

import inspect
import pathlib
from collections.abc import Sequence

import torch
from torch import nn

from implementations.common.seed_batching import (
    SeedBatchedLinear,
    correct_counts,
    each_seed_sequentially,
    summed_mean_cross_entropy,
)
from implementations.common.run_context import RunContext
from implementations.common.streams import Task
from implementations.sgm import protocols, torch_masking


def _stacked_mlp(models: Sequence[nn.Sequential]) -> nn.Sequential:
    """The models' layers (linear and ReLU, as `split_mnist_mlp` builds them), each member's tensors
    stacked along dimension 0: the parameters keep `model.parameters()`'s order."""
    layers: list[nn.Module] = []
    for same_layer in zip(*models):
        if isinstance(same_layer[0], nn.Linear):
            layers.append(SeedBatchedLinear(same_layer))
        elif isinstance(same_layer[0], nn.ReLU):
            layers.append(nn.ReLU())
        else:
            raise NotImplementedError(f"no seed-batched version of {type(same_layer[0]).__name__}")
    return nn.Sequential(*layers)


def _copy_of_global_generator() -> torch.Generator:
    """A private CPU generator in the global torch generator's current state."""
    generator = torch.Generator()
    generator.set_state(torch.get_rng_state())
    return generator


class _StackedMasks:
    """Every member's flat {0,1} gradient mask (members x parameters per model), in `parameters`' order,
    with per-parameter views shaped like the stacked parameters."""

    def __init__(self, parameters: Sequence[nn.Parameter]):
        self.parameters = list(parameters)
        members = self.parameters[0].shape[0]
        self.flat = torch.ones(members, sum(p[0].numel() for p in self.parameters), device=self.parameters[0].device)
        self.views, offset = [], 0
        for p in self.parameters:
            self.views.append(self.flat[:, offset:offset + p[0].numel()].view_as(p))
            offset += p[0].numel()

    def apply_to_gradients(self) -> None:
        for p, view in zip(self.parameters, self.views):
            p.grad.mul_(view)

    def lock_top_gradients(self, member: int, fraction: float) -> None:
        """GradientMask.lock_top_gradients for one member: top-k of its own flat |grad|."""
        flat_gradient = torch.cat([p.grad[member].abs().flatten() for p in self.parameters])
        self.flat[member][torch.topk(flat_gradient, int(fraction * flat_gradient.numel())).indices] = 0.0

    def locked_fraction(self, member: int) -> float:
        return float((self.flat[member] == 0).float().mean())


def _flat_parameters(parameters: Sequence[nn.Parameter], member: int) -> torch.Tensor:
    return torch.cat([p.detach()[member].flatten() for p in parameters])


def _accuracies(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """Every member's `torch_masking.accuracy` on the shared rows x, y."""
    members = net[0].weight.shape[0]
    counts = correct_counts(net, x.expand(members, *x.shape), y.expand(members, *y.shape), torch_masking.EVAL_CHUNK)
    return [count / len(x) for count in counts.tolist()]


def _task_orders(generators: Sequence[torch.Generator], n_samples: int, epochs: int,
                 device: torch.device) -> list[torch.Tensor]:
    """Per epoch, every member's batch order (members x samples): each seed's baseline draws its epochs'
    permutations, then its SGM model draws its own, from the seed's generator, as the protocol's
    `train_task_adam` calls draw them from the global one."""
    baseline_orders, sgm_orders = [], []
    for generator in generators:
        for orders in (baseline_orders, sgm_orders):
            orders.append([torch.randperm(n_samples, generator=generator, device=generator.device)
                           for _ in range(epochs)])
    members = baseline_orders + sgm_orders
    return [torch.stack([member[epoch] for member in members]).to(device) for epoch in range(epochs)]


def _train_task(net: nn.Module, masks: _StackedMasks, task: Task, orders: Sequence[torch.Tensor], *, batch_size: int,
                lr: float) -> None:
    """train_task_adam for every member at once: a fresh Adam; each step every member's own batch, its own
    mean loss, its gradients multiplied by its mask. The last minibatch's gradients stay in `.grad`."""
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    for order in orders:
        for start in range(0, order.shape[1], batch_size):
            batch = order[:, start:start + batch_size]
            loss = summed_mean_cross_entropy(net(task.x_train[batch]), task.y_train[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            masks.apply_to_gradients()
            optimizer.step()


def gradient_masking_split_seeds(*, seeds: Sequence[int], device: str, data_dir: pathlib.Path,
                                 **params) -> list[dict]:
    """Same outputs as [gradient_masking_split(context=RunContext(s, device, data_dir), **params) for s in
    seeds], each after its context's `reseed()`: for MNIST every seed's baseline and SGM model train in one
    pass (module docstring); CIFAR-10 runs the sequential protocol seed by seed."""
    # The sequential protocol's defaults, its TypeError for an unknown parameter, its KeyError for an
    # unknown dataset.
    arguments = inspect.signature(protocols.gradient_masking_split).bind_partial(**params)
    arguments.apply_defaults()
    settings = arguments.arguments
    load, make_model, flatten = protocols.GRADIENT_MASKING_DATA[settings["dataset"]]
    if settings["dataset"] != "mnist":
        return each_seed_sequentially(protocols.gradient_masking_split, seeds, device=device, data_dir=data_dir,
                                      **params)
    if not seeds:
        return []
    tasks = torch_masking.pair_tasks(load(data_dir, "train"), load(data_dir, "test"), settings["n_tasks"], device,
                                     flatten, True, settings["max_per_task"], settings["max_test_per_task"])
    baselines, sgms, generators = [], [], []
    for seed in seeds:
        RunContext(seed, device, data_dir).reseed()  # as the protocol does before building its two models
        baselines.append(make_model())
        sgms.append(make_model())
        generators.append(_copy_of_global_generator())
    net = _stacked_mlp(baselines + sgms).to(device)
    parameters = list(net.parameters())
    masks = _StackedMasks(parameters)
    sgm_members = range(len(seeds), 2 * len(seeds))

    def test_rows() -> list[list[float]]:
        """Per member, its test accuracy on every task."""
        return [list(row) for row in zip(*(_accuracies(net, task.x_test, task.y_test) for task in tasks))]

    untrained = test_rows()
    outputs = [{"untrained_accuracy": untrained[member], "untrained_accuracy_baseline": untrained[seed_index],
                "script_accuracy": [], "script_accuracy_baseline": [], "locked_percent": [],
                "accuracy_matrix": [], "accuracy_matrix_baseline": [], "max_abs_change_locked": []}
               for seed_index, member in enumerate(sgm_members)]
    for task in tasks:
        locked_before = [masks.flat[member] == 0 for member in sgm_members]
        values_before = [_flat_parameters(parameters, member) for member in sgm_members]
        orders = _task_orders(generators, len(task.y_train), settings["epochs"], torch.device(device))
        _train_task(net, masks, task, orders, batch_size=settings["batch_size"], lr=settings["lr"])
        script = _accuracies(net, task.x_train, task.y_train)
        for seed_index, member in enumerate(sgm_members):
            seed_outputs = outputs[seed_index]
            seed_outputs["script_accuracy_baseline"].append(script[seed_index])
            seed_outputs["script_accuracy"].append(script[member])
            change = (_flat_parameters(parameters, member) - values_before[seed_index]).abs()[locked_before[seed_index]]
            seed_outputs["max_abs_change_locked"].append(float(change.max()) if change.numel() else 0.0)
            masks.lock_top_gradients(member, settings["lock_fraction"])
            seed_outputs["locked_percent"].append(100.0 * masks.locked_fraction(member))
        rows = test_rows()
        for seed_index, member in enumerate(sgm_members):
            outputs[seed_index]["accuracy_matrix"].append(rows[member])
            outputs[seed_index]["accuracy_matrix_baseline"].append(rows[seed_index])
    for seed_outputs in outputs:
        seed_outputs["train_sizes"] = [len(task.y_train) for task in tasks]
        seed_outputs["test_sizes"] = [len(task.y_test) for task in tasks]
    return outputs


FORMS = {"implementations.sgm.protocols:gradient_masking_split": gradient_masking_split_seeds}
