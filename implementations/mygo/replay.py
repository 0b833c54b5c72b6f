"""Exemplar replay with per-task heads, for a memory budget matched to MyGO's generators (spec §3.10).

After each task a fixed number of its training images (drawn at random) is kept; every training
step of a later task adds the cross-entropy of one replayed batch, drawn uniformly from all kept
exemplars, each through its own task's head (task-incremental, like MyGO): the sum of the replayed
rows' cross-entropies, divided by the replay batch size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from implementations.common.streams import Task
from implementations.common.training import Strategy
from implementations.common.transfer import to_device


class ExemplarReplay(Strategy):
    """Cross-entropy on the current batch plus on a replayed batch of stored exemplars."""

    def __init__(self, exemplars_per_task: int, replay_batch_size: int, rng: torch.Generator):
        self.exemplars_per_task = exemplars_per_task
        self.replay_batch_size = replay_batch_size
        self.rng = rng
        self.x: list[torch.Tensor] = []
        self.y: list[torch.Tensor] = []
        self.task_ids: list[int] = []  # on the host: the step loop never reads a device value
        self.stored: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: Task) -> torch.Tensor:
        """No host synchronisation (engine issue, GPU hygiene): each kept task's head sees the whole
        replayed batch and its cross-entropy counts only the rows of its own task (a where, not a
        boolean index), and the picks drawn on the host go to the device without a blocking copy."""
        loss = super().loss(model, x, y, task)
        if self.stored is None:
            return loss
        stored_x, stored_y, stored_task = self.stored
        picks = to_device(torch.randint(len(stored_x), (self.replay_batch_size,), generator=self.rng,
                                        device=self.rng.device), stored_x.device)
        replay_task, replay_y = stored_task[picks], stored_y[picks]
        features = model.features(stored_x[picks])
        replay_loss = torch.zeros((), device=x.device)
        for task_id in dict.fromkeys(self.task_ids):
            per_row = F.cross_entropy(model.head(task_id)(features), replay_y, reduction="none")
            replay_loss = replay_loss + torch.where(replay_task == task_id, per_row, 0.0).sum()
        return loss + replay_loss / self.replay_batch_size

    def after_task(self, model: nn.Module, task: Task) -> None:
        order = torch.randperm(len(task.x_train), generator=self.rng, device=self.rng.device)
        kept = order[:self.exemplars_per_task].to(task.x_train.device)
        self.x.append(task.x_train[kept].clone())
        self.y.append(task.y_train[kept].clone())
        self.task_ids.append(task.task_id)
        ids = [torch.full((len(x),), task_id, device=x.device) for x, task_id in zip(self.x, self.task_ids)]
        self.stored = torch.cat(self.x), torch.cat(self.y), torch.cat(ids)  # once per task, not per step

    def stored_images(self) -> int:
        return sum(len(x) for x in self.x)

