"""Exemplar replay with per-task heads, for a memory budget matched to MyGO's generators (spec §3.10).

After each task a fixed number of its training images (drawn at random) is kept; every training
step of a later task adds the cross-entropy of one replayed batch, drawn uniformly from all kept
exemplars, each through its own task's head (task-incremental, like MyGO).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from implementations.common.streams import Task
from implementations.common.training import Strategy


class ExemplarReplay(Strategy):
    """Cross-entropy on the current batch plus on a replayed batch of stored exemplars."""

    def __init__(self, exemplars_per_task: int, replay_batch_size: int, rng: torch.Generator):
        self.exemplars_per_task = exemplars_per_task
        self.replay_batch_size = replay_batch_size
        self.rng = rng
        self.x: list[torch.Tensor] = []
        self.y: list[torch.Tensor] = []
        self.task_ids: list[torch.Tensor] = []

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: Task) -> torch.Tensor:
        loss = super().loss(model, x, y, task)
        if not self.x:
            return loss
        stored_x, stored_y, stored_task = torch.cat(self.x), torch.cat(self.y), torch.cat(self.task_ids)
        picks = torch.randint(len(stored_x), (self.replay_batch_size,), generator=self.rng,
                              device=self.rng.device).to(stored_x.device)
        replay_task = stored_task[picks]
        features = model.features(stored_x[picks])
        replay_loss = torch.zeros((), device=x.device)
        for task_id in replay_task.unique().tolist():
            chosen = replay_task == task_id
            logits = model.head(task_id)(features[chosen])
            replay_loss = replay_loss + F.cross_entropy(logits, stored_y[picks][chosen], reduction="sum")
        return loss + replay_loss / self.replay_batch_size

    def after_task(self, model: nn.Module, task: Task) -> None:
        order = torch.randperm(len(task.x_train), generator=self.rng, device=self.rng.device)
        kept = order[:self.exemplars_per_task].to(task.x_train.device)
        self.x.append(task.x_train[kept].clone())
        self.y.append(task.y_train[kept].clone())
        self.task_ids.append(torch.full((len(kept),), task.task_id, device=task.x_train.device))

    def stored_images(self) -> int:
        return sum(len(x) for x in self.x)
