"""L2 anchoring (L2-SP, Li et al. 2018): a quadratic pull toward the weights learned so far.

Penalty: (coefficient / 2) * sum over the anchored parameters of ||theta - theta_anchor||^2, a sum
over elements (not a mean), with the anchor taken at the end of the most recent task. It is EWC with
the Fisher diagonal replaced by ones, and it stores one copy of the anchored parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from implementations.common.streams import Task
from implementations.common.training import Strategy


def selected_parameters(model: nn.Module, parameter_names: Sequence[str] | None) -> dict[str, nn.Parameter]:
    """The named parameters to regularise: all of them (None) or exactly the listed names."""
    parameters = dict(model.named_parameters())
    if parameter_names is None:
        return parameters
    unknown = sorted(set(parameter_names) - set(parameters))
    if unknown:
        raise ValueError(f"no parameters named {unknown}; the model has {sorted(parameters)}")
    return {name: parameters[name] for name in parameter_names}


class L2Anchor(Strategy):
    """Cross-entropy plus (coefficient / 2) * ||theta - theta_anchor||^2 once a task has been learned."""

    def __init__(self, coefficient: float, parameter_names: Sequence[str] | None = None):
        self.coefficient = coefficient
        self.parameter_names = None if parameter_names is None else tuple(parameter_names)
        self.anchor: dict[str, torch.Tensor] = {}

    def penalty(self, model: nn.Module) -> torch.Tensor:
        parameters = selected_parameters(model, self.parameter_names)
        squared_distance = sum(((parameters[name] - anchor) ** 2).sum() for name, anchor in self.anchor.items())
        return 0.5 * self.coefficient * squared_distance

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: Task) -> torch.Tensor:
        loss = super().loss(model, x, y, task)
        if not self.anchor:
            return loss
        return loss + self.penalty(model)

    def after_task(self, model: nn.Module, task: Task) -> None:
        self.anchor = {name: parameter.detach().clone()
                       for name, parameter in selected_parameters(model, self.parameter_names).items()}

    def stored_floats(self) -> int:
        """Numbers kept between tasks: one anchor value per regularised parameter element."""
        return sum(anchor.numel() for anchor in self.anchor.values())
