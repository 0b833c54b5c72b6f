"""PyTorch lock masks: top-|grad| gradient masking (family D) and fixed forward masks (family F).

D, `experiments/mnist_cifar_combined.py` (spec §1.7 D): Split-MNIST / Split-CIFAR-10 pairs with one
shared 2-unit head; a fresh Adam per task; gradients multiplied by a flat {0,1} mask; after each task
the 10% of all parameters with the largest |grad| on the last minibatch are locked. Because Adam is
fresh and a locked gradient is 0 from its first step, locked coordinates stay exactly frozen. The
script's printed "retention" is the accuracy on the just-trained task's own training data.

F, `experiments/masked_forward_isolation.py` (spec §1.7 F): a 784-512-512-10 MLP whose forward pass
multiplies every weight and bias by a fixed task mask. The script's masks are blocks of 2048 flat
coordinates, 16 per task; all five fall inside fc1's weight, so fc2 and fc3 are masked to zero, the
logits are identically 0 and nothing trains. The `every_layer` layout gives each task a contiguous
share of every tensor instead: a working subnetwork per task.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from implementations.common.datasets import LabelledImages
from implementations.common.streams import Task
from implementations.common.training import Strategy, train_task

EVAL_CHUNK = 2048  # evaluation batch: the CNN's activations for a whole split do not fit in memory


# ---------------------------------------------------------------------------------------------
# Data: digit / class pairs (2t, 2t+1)


def pair_indices(labels: np.ndarray, task: int, max_samples: int | None) -> np.ndarray:
    """Indices of classes 2t and 2t+1, in dataset order, the first `max_samples` of them if given."""
    indices = np.flatnonzero((labels == 2 * task) | (labels == 2 * task + 1))
    return indices if max_samples is None else indices[:max_samples]


def pair_tasks(train: LabelledImages, test: LabelledImages, n_tasks: int, device: str, flatten: bool,
               binary_labels: bool, max_train: int | None = None, max_test: int | None = None) -> list[Task]:
    """Task t = pair (2t, 2t+1) on the device; y is 0/1 (first/second class, "local") or the original class."""
    tasks = []
    for task in range(n_tasks):
        splits = []
        for images, max_samples in ((train, max_train), (test, max_test)):
            x, y = images.subset(pair_indices(images.y, task, max_samples)).to_tensors(device, flatten=flatten)
            splits += [x, (y == 2 * task + 1).long() if binary_labels else y]
        tasks.append(Task(task, (2 * task, 2 * task + 1), *splits, labels="local" if binary_labels else "global"))
    return tasks


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    correct = sum(int((model(x[i:i + EVAL_CHUNK]).argmax(1) == y[i:i + EVAL_CHUNK]).sum())
                  for i in range(0, len(x), EVAL_CHUNK))
    return correct / len(x)


# ---------------------------------------------------------------------------------------------
# Family D: mnist_cifar_combined


def split_mnist_mlp() -> nn.Sequential:
    """784 -> 1024 -> ReLU -> 1024 -> ReLU -> 2 (1,855,490 parameters), default init."""
    return nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 2))


def split_cifar_cnn() -> nn.Sequential:
    """conv3x3(3->32)-ReLU-pool, conv3x3(32->64)-ReLU-pool, fc 4096->256-ReLU, fc 2 (1,068,738 parameters)."""
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(4096, 256), nn.ReLU(), nn.Linear(256, 2),
    )


def per_tensor_views(flat: torch.Tensor, parameters: list[nn.Parameter]) -> list[torch.Tensor]:
    """Views of consecutive slices of `flat` shaped like each parameter: the flattening order of the scripts."""
    views, offset = [], 0
    for p in parameters:
        views.append(flat[offset:offset + p.numel()].view_as(p))
        offset += p.numel()
    return views


class GradientMask:
    """A flat {0,1} mask over all parameters in `model.parameters()` order, with per-tensor views."""

    def __init__(self, model: nn.Module):
        self.parameters = list(model.parameters())
        device = self.parameters[0].device
        self.flat = torch.ones(sum(p.numel() for p in self.parameters), device=device)
        self.views = per_tensor_views(self.flat, self.parameters)

    def apply_to_gradients(self) -> None:
        for p, view in zip(self.parameters, self.views):
            p.grad.mul_(view)

    def lock_top_gradients(self, fraction: float) -> None:
        """Lock the top int(fraction N) entries of the current |grad| (the last minibatch's, already
        masked). Fewer than that many non-zero entries means top-k also re-picks locked or zero
        entries, so the locked share grows by less than `fraction` (§1.7 D)."""
        flat_gradient = torch.cat([p.grad.abs().flatten() for p in self.parameters])
        self.flat[torch.topk(flat_gradient, int(fraction * flat_gradient.numel())).indices] = 0.0

    def locked_fraction(self) -> float:
        return float((self.flat == 0).float().mean())

    def locked(self) -> torch.Tensor:
        return self.flat == 0


def flat_parameters(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


class GradientMasking(Strategy):
    """Family D: the lock mask multiplies every gradient before the optimizer step."""

    def __init__(self, mask: GradientMask):
        self.mask = mask

    def after_backward(self, model: nn.Module, task: Task) -> None:
        self.mask.apply_to_gradients()


def train_task_adam(model: nn.Module, task: Task, *, epochs: int, batch_size: int, lr: float,
                    mask: GradientMask | None) -> None:
    """A fresh Adam for this task; the script's `torch.randperm(n)` batch order, on the global generator;
    the mask (if any) multiplies each gradient.

    The gradients of the last minibatch stay in `.grad`: the mask update reads them."""
    train_task(model, Strategy() if mask is None else GradientMasking(mask), task, epochs=epochs,
               batch_size=batch_size, optimizer=torch.optim.Adam(model.parameters(), lr=lr),
               generator=torch.default_generator)


# ---------------------------------------------------------------------------------------------
# Family F: masked_forward_isolation


class MaskedMLP(nn.Module):
    """784-512-512-10 whose forward multiplies every weight and bias by a {0,1} mask buffer.

    Weights: Kaiming-uniform with a = sqrt(5) (nn.Linear's default); biases U(-1, 1), because the
    original hard-codes the fan-in of the bias bound to 1 (§1.7 F)."""

    def __init__(self, n_in: int = 784, hidden: int = 512, n_out: int = 10):
        super().__init__()
        sizes = [(hidden, n_in), (hidden, hidden), (n_out, hidden)]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for n_rows, n_cols in sizes:
            weight = nn.Parameter(torch.empty(n_rows, n_cols))
            nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
            bias = nn.Parameter(torch.empty(n_rows).uniform_(-1.0, 1.0))
            self.weights.append(weight)
            self.biases.append(bias)
        self.masks: list[torch.Tensor] = []  # set by set_mask before any forward pass

    def ordered_parameters(self) -> list[nn.Parameter]:
        """fc1_w, fc1_b, fc2_w, fc2_b, fc3_w, fc3_b: the substrate's flattening order."""
        return [p for pair in zip(self.weights, self.biases) for p in pair]

    def set_mask(self, flat_mask: torch.Tensor) -> None:
        self.masks = per_tensor_views(flat_mask, self.ordered_parameters())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        masked = [p * m for p, m in zip(self.ordered_parameters(), self.masks)]
        h = F.relu(F.linear(x, masked[0], masked[1]))
        h = F.relu(F.linear(h, masked[2], masked[3]))
        return F.linear(h, masked[4], masked[5])


def script_block_masks(model: MaskedMLP, n_tasks: int, block_size: int, blocks_per_task: int) -> list[torch.Tensor]:
    """The script's layout: flat blocks [16t, 16t+16) of 2048 coordinates, i.e. [32768 t, 32768 (t+1))."""
    n_params = sum(p.numel() for p in model.ordered_parameters())
    span = block_size * blocks_per_task
    if span * n_tasks > n_params:
        raise ValueError(f"{n_tasks} tasks x {span} coordinates exceed {n_params} parameters")
    masks = []
    for task in range(n_tasks):
        mask = torch.zeros(n_params)
        mask[task * span:(task + 1) * span] = 1.0
        masks.append(mask)
    return masks


def every_layer_masks(model: MaskedMLP, n_tasks: int) -> list[torch.Tensor]:
    """The corrected layout: every tensor's flat coordinates split into T contiguous chunks.

    With row-major weights this hands task t a band of hidden units in fc1 and fc2 and output rows
    2t, 2t+1 of fc3 (its own classes), so each task is a working, disjoint subnetwork."""
    per_tensor = []
    for p in model.ordered_parameters():
        bounds = np.linspace(0, p.numel(), n_tasks + 1).round().astype(int)
        per_tensor.append(bounds)
    masks = []
    for task in range(n_tasks):
        pieces = []
        for p, bounds in zip(model.ordered_parameters(), per_tensor):
            piece = torch.zeros(p.numel())
            piece[bounds[task]:bounds[task + 1]] = 1.0
            pieces.append(piece)
        masks.append(torch.cat(pieces))
    return masks


class HardLocks(Strategy):
    """Family F: the gradients of hard-locked coordinates are zeroed; the largest |gradient| is recorded."""

    def __init__(self, model: MaskedMLP, locked: torch.Tensor):
        self.parameters = model.ordered_parameters()
        self.locked_views = per_tensor_views(locked, self.parameters)
        self.largest = torch.zeros((), device=locked.device)  # kept on the device: no host read per step

    def after_backward(self, model: nn.Module, task: Task) -> None:
        for p, lock in zip(self.parameters, self.locked_views):
            p.grad.masked_fill_(lock, 0.0)
            self.largest = torch.maximum(self.largest, p.grad.abs().max())

    @property
    def largest_gradient(self) -> float:
        """The largest |gradient| seen so far, read on the host (once, after training)."""
        return float(self.largest)


def train_task_masked_forward(model: MaskedMLP, task: Task, *, locked: torch.Tensor, epochs: int, batch_size: int,
                              lr: float, generator: torch.Generator) -> float:
    """AdamW (weight decay 0), a fresh one per task, hard-locked coordinates' gradients zeroed.

    Returns the largest |gradient| seen, which is exactly 0 when the masked network cannot learn."""
    strategy = HardLocks(model, locked)
    train_task(model, strategy, task, epochs=epochs, batch_size=batch_size,
               optimizer=torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0), generator=generator)
    return strategy.largest_gradient


@torch.no_grad()
def logits_sha256(model: nn.Module, x: torch.Tensor) -> tuple[str, bool]:
    """SHA-256 of the little-endian float32 bytes of the logits, and whether they are all zero."""
    logits = torch.cat([model(x[i:i + EVAL_CHUNK]) for i in range(0, len(x), EVAL_CHUNK)]).float().cpu()
    digest = hashlib.sha256(logits.numpy().astype("<f4").tobytes()).hexdigest()
    return digest, bool((logits == 0).all())
