"""DTG-MA as the repository implements it (spec §1), and its library training loop (§1.5, §2.1).

The model is a shared input projection, L pre-LayerNorm blocks whose attention, FFN and output
head are private to each task, and a stored additive mask per task. Inputs are flat vectors, so
the attention runs over a sequence of one token (§1.2): the softmax is 1 for any finite score, the
mask adds 0 to a 1x1 score matrix, and W_Q / W_K never receive gradient. The code below computes
the attention in full anyway, so that those facts are measured rather than assumed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from implementations.common.models import TaskConditioned
from implementations.common.parameter_counts import trained_parameter_count
from implementations.common.streams import Task
from implementations.common.training import Strategy, run_stream


def _task_key(task_id: int) -> str:
    return str(task_id)


class TaskAttention(nn.Module):
    """One task's Q/K/V/O projections (spec §1.3 steps 2-4); the mask comes from the layer."""

    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model)
        self.value = nn.Linear(d_model, d_model)
        self.output = nn.Linear(d_model, d_model)
        self.attention_dropout = nn.Dropout(dropout)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.n_heads, self.d_head).transpose(1, 2)

    def forward(self, u: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split_heads(self.query(u)), self._split_heads(self.key(u)), self._split_heads(self.value(u))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_head) + mask
        weights = self.attention_dropout(torch.softmax(scores, dim=-1))
        batch, _, length, _ = weights.shape
        heads = (weights @ v).transpose(1, 2).reshape(batch, length, self.n_heads * self.d_head)
        return self.output(heads)


def task_ffn(d_model: int, d_ff: int, dropout: float) -> nn.Sequential:
    """Linear -> ReLU -> Dropout -> Linear -> Dropout (spec §1.3: the FFN holds both dropouts)."""
    return nn.Sequential(nn.Linear(d_model, d_ff), nn.ReLU(), nn.Dropout(dropout), nn.Linear(d_ff, d_model),
                         nn.Dropout(dropout))


class DTGMALayer(nn.Module):
    """Pre-LayerNorm block: shared LN1/LN2, per-task attention and FFN, the stored mask buffer."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float, n_tasks_max: int):
        super().__init__()
        self.d_model, self.n_heads, self.d_ff, self.dropout = d_model, n_heads, d_ff, dropout
        self.norm_attention = nn.LayerNorm(d_model)
        self.norm_ffn = nn.LayerNorm(d_model)
        self.attention = nn.ModuleDict()
        self.ffn = nn.ModuleDict()
        self.residual_dropout = nn.Dropout(dropout)
        # (n_tasks_max, H, 1, 1), -inf until a task is registered (spec §1.4): the trailing 1x1 is
        # all the "task graph" there is.
        self.register_buffer("task_masks", torch.full((n_tasks_max, n_heads, 1, 1), float("-inf")))

    def add_task(self, task_id: int) -> None:
        device = self.task_masks.device
        self.attention[_task_key(task_id)] = TaskAttention(self.d_model, self.n_heads, self.dropout).to(device)
        self.ffn[_task_key(task_id)] = task_ffn(self.d_model, self.d_ff, self.dropout).to(device)
        self.task_masks[task_id] = 0.0

    def forward(self, h: torch.Tensor, task_id: int) -> torch.Tensor:
        length = h.shape[1]
        # The original slices [:seq_len, :seq_len] of a 1x1 buffer: for S = 1 that is the one entry.
        mask = self.task_masks[task_id, :, :length, :length]
        h = h + self.residual_dropout(self.attention[_task_key(task_id)](self.norm_attention(h), mask))
        return h + self.ffn[_task_key(task_id)](self.norm_ffn(h))


class DTGMAModel(TaskConditioned):
    """Input projection -> L DTG-MA layers -> per-task head; forward(x, task_id) (spec §1.1-1.3, 1.7).

    No final LayerNorm. Tasks are registered with `add_task`, which builds their modules on the
    model's device and opens their mask entry.
    """

    def __init__(self, input_dim: int, hidden_dim: int = 256, num_classes: int = 2, n_layers: int = 2,
                 n_heads: int = 4, dropout: float = 0.1, n_tasks_max: int = 20):
        super().__init__()
        self.hidden_dim, self.num_classes = hidden_dim, num_classes
        self.input_projection = nn.Linear(input_dim, hidden_dim)
        self.layers = nn.ModuleList(
            DTGMALayer(hidden_dim, n_heads, 4 * hidden_dim, dropout, n_tasks_max) for _ in range(n_layers))
        self.heads = nn.ModuleDict()

    @property
    def registered_tasks(self) -> list[int]:
        return [int(key) for key in self.heads]

    def add_task(self, task_id: int) -> None:
        if _task_key(task_id) in self.heads:
            return
        for layer in self.layers:
            layer.add_task(task_id)
        self.heads[_task_key(task_id)] = nn.Linear(self.hidden_dim, self.num_classes).to(
            self.input_projection.weight.device)

    def features(self, x: torch.Tensor, task_id: int) -> torch.Tensor:
        h = self.input_projection(x)
        if h.ndim == 2:
            h = h.unsqueeze(1)  # one token per sample (spec §1.2)
        for layer in self.layers:
            h = layer(h, task_id)
        return h.squeeze(1)

    def forward(self, x: torch.Tensor, task_id: int) -> torch.Tensor:
        return self.heads[_task_key(task_id)](self.features(x, task_id))

    def task_parameters(self, task_id: int) -> list[nn.Parameter]:
        """Task t's Q/K/V/O, FFNs and head that still require grad (the library's optimiser set)."""
        key = _task_key(task_id)
        modules = [m for layer in self.layers for m in (layer.attention[key], layer.ffn[key])] + [self.heads[key]]
        return [p for module in modules for p in module.parameters() if p.requires_grad]

    def freeze_task(self, task_id: int) -> None:
        """The whole of "freezing" (spec §1.5): requires_grad=False on task t's own modules."""
        for parameter in self.task_parameters(task_id):
            parameter.requires_grad_(False)

    def task_registered_parameters(self) -> list[nn.Parameter]:
        """What `add_task` created: every registered task's Q/K/V/O, FFNs and head, frozen or not.

        experiments.py counts the model before any task is registered, so it counts none of these
        (spec §1.6). The parameter-count rule reads this list (implementations/common/parameter_counts.py).
        """
        per_task = [*(layer.attention for layer in self.layers), *(layer.ffn for layer in self.layers), self.heads]
        return [p for module in per_task for p in module.parameters()]

    def shared_parameters(self) -> dict[str, torch.Tensor]:
        """Input projection and LayerNorms: never handed to any optimiser by the library loop."""
        return {name: p for name, p in self.named_parameters()
                if name.startswith("input_projection.") or ".norm_" in name}

    def set_task_mask(self, task_id: int, value: float) -> None:
        for layer in self.layers:
            layer.task_masks[task_id] = value


class DTGMALibraryTraining(Strategy):
    """The library `train_task` / `train_continual` (spec §1.5): cross-entropy, freeze after the task."""

    def __init__(self, freeze_after_training: bool = True):
        self.freeze_after_training = freeze_after_training

    def after_task(self, model: nn.Module, task: Task) -> None:
        if self.freeze_after_training:
            model.freeze_task(task.task_id)


def task_adam(lr: float):
    """make_optimizer for run_stream: a fresh Adam (default betas, eps) over the task's own parameters."""

    def make_optimizer(model: DTGMAModel, task_id: int) -> torch.optim.Optimizer:
        return torch.optim.Adam(model.task_parameters(task_id), lr=lr)

    return make_optimizer


def train_continual(model: DTGMAModel, tasks: Sequence[Task], *, epochs: int, lr: float, batch_size: int,
                    seed: int, device: str, freeze_after_training: bool = True) -> dict:
    """Train task after task with the library loop; returns run_stream's accuracy matrix (task-id eval).

    Every task is registered before training starts, because run_stream tests every task after each
    one: entries R[i][j] for j > i are then an untrained head's (chance) accuracy where the original
    wrote 0. No metric the claims use reads them (forgetting reads rows j.. of column j).
    """
    model.to(device)
    for task in tasks:
        model.add_task(task.task_id)
    return run_stream(model, DTGMALibraryTraining(freeze_after_training), tasks, epochs=epochs,
                      batch_size=batch_size, make_optimizer=task_adam(lr), seed=seed, device=device,
                      evaluate_untrained=False)


def parameter_count(model: nn.Module) -> int:
    """Every parameter of `model`. This is item 2 of the one counting rule (``parameter_count_trained``).

    Protocols report counts through implementations.common.parameter_counts.parameter_count_outputs.
    """
    return trained_parameter_count(model)
