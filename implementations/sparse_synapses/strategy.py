"""Plain SGD fine-tuning with the weight masks enforced the way the arm's behaviour says (spec §3.2, §5.3)."""

from __future__ import annotations

import torch
from torch import nn

from implementations.common.streams import Task
from implementations.common.training import Strategy
from implementations.sparse_synapses.sparse_weights import rezero_weights


class SparseSynapses(Strategy):
    """Cross-entropy on the current task, nothing against forgetting (the project has no CL regulariser).

    After each optimizer step the masks in "rezero_after_step" mode are re-applied, as today's
    nupic.torch requires; "2019" masks re-zero themselves in the next training forward instead.
    The project never decays the boost strength (§3.2), so neither does this strategy.
    """

    def after_step(self, model: nn.Module, task: Task) -> None:
        rezero_weights(model)


def make_sgd(*, lr: float, momentum: float, nesterov: bool, weight_decay: float, trained=None):
    """make_optimizer for run_stream: one torch SGD over `trained(model)` (default: every parameter).

    run_stream(optimizer_per_task=False) builds it once, so momentum carries across tasks as in the
    original (§3.2).
    """

    def make_optimizer(model: nn.Module, task_id: int) -> torch.optim.Optimizer:
        parameters = model.parameters() if trained is None else trained(model)
        return torch.optim.SGD(parameters, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)

    return make_optimizer
