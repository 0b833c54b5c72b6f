"""Elastic weight consolidation (Kirkpatrick et al. 2017) with a diagonal Fisher per learned task.

After each task: the diagonal empirical Fisher, the mean over that task's training samples of the
squared per-sample gradient of the log-likelihood of the true label, and an anchor copy of the
weights. Training a later task adds (strength / 2) * sum_tasks sum_i F_i (theta_i - theta_anchor_i)^2,
a sum over elements, the same convention as `l2.L2Anchor` (EWC with F = 1 is L2 anchoring). The
Fisher pass is the one time EWC reads a task's data, at the end of that task, while it is still the
current task; afterwards it stores two numbers per regularised parameter element per task.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from implementations.baselines.fisher import mean_squared_sample_gradients
from implementations.baselines.l2 import selected_parameters
from implementations.common.streams import Task
from implementations.common.training import Strategy


@dataclass(frozen=True)
class FisherAnchor:
    """What EWC keeps of one learned task."""

    fisher: dict[str, torch.Tensor]
    anchor: dict[str, torch.Tensor]


def empirical_fisher(model: nn.Module, task: Task, parameter_names: Sequence[str] | None, *,
                     samples: int | None = None, batch_size: int = 256,
                     generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Mean squared per-sample gradient of -log p(y | x) over `samples` training samples of `task`.

    samples=None uses every training sample; otherwise a random subset drawn with `generator`.
    Computed in eval mode, `batch_size` samples at a time (see fisher.py for how).
    """
    n_samples = len(task.x_train)
    if samples is None or samples >= n_samples:
        chosen = torch.arange(n_samples, device=task.x_train.device)
    else:
        order = torch.randperm(n_samples, generator=generator, device="cpu" if generator is None else generator.device)
        chosen = order[:samples].to(task.x_train.device)
    batches = ((task.x_train[batch], task.y_train[batch]) for batch in chosen.split(batch_size))
    names = list(selected_parameters(model, parameter_names))
    return mean_squared_sample_gradients(model, batches, names, _cross_entropy_per_sample, task.task_id)


def _cross_entropy_per_sample(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y, reduction="none")


class EWC(Strategy):
    """Cross-entropy plus (strength / 2) * sum over past tasks of F (theta - theta_task)^2."""

    def __init__(self, strength: float, parameter_names: Sequence[str] | None = None, *,
                 fisher_samples: int | None = None, fisher_seed: int = 0):
        self.strength = strength
        self.parameter_names = None if parameter_names is None else tuple(parameter_names)
        self.fisher_samples = fisher_samples
        self.fisher_seed = fisher_seed
        self.learned: list[FisherAnchor] = []

    def with_strength(self, strength: float) -> EWC:
        """The same Fisher and anchors with another strength (a strength sweep needs one Fisher pass)."""
        other = copy.copy(self)
        other.strength = strength
        other.learned = list(self.learned)
        return other

    def penalty(self, model: nn.Module) -> torch.Tensor:
        parameters = selected_parameters(model, self.parameter_names)
        total = sum(((parameters[name] - anchor) ** 2 * learned.fisher[name]).sum()
                    for learned in self.learned for name, anchor in learned.anchor.items())
        return 0.5 * self.strength * total

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: Task) -> torch.Tensor:
        loss = super().loss(model, x, y, task)
        if not self.learned:
            return loss
        return loss + self.penalty(model)

    def after_task(self, model: nn.Module, task: Task) -> None:
        generator = torch.Generator().manual_seed(self.fisher_seed + task.task_id)
        fisher = empirical_fisher(model, task, self.parameter_names, samples=self.fisher_samples,
                                  generator=generator)
        anchor = {name: p.detach().clone() for name, p in selected_parameters(model, self.parameter_names).items()}
        self.learned.append(FisherAnchor(fisher, anchor))

    def stored_floats(self) -> int:
        """Numbers kept between tasks: a Fisher value and an anchor value per element per task."""
        return sum(f.numel() + a.numel() for learned in self.learned
                   for f, a in zip(learned.fisher.values(), learned.anchor.values()))
