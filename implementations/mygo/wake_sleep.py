"""Wake and sleep phases of MyGO's CV run (spec §1.4-1.6).

`faithful=True` reproduces `src/test.py`, bugs included:

* the wake phase sets requires_grad = False on every feature parameter and nothing ever sets it
  back, so the features keep their random initialisation for the whole run (§1.6a);
* the head of task t is trained in place inside M_ctx, so the sleep teacher (a deep copy of M_ctx
  with head t reloaded from that very state) equals the student and the distillation loss is exactly
  0 (§1.6b).

`faithful=False` is the variant the README describes, with both bugs fixed the only way that can
change anything (§1.6c, §4.3): the wake phase trains the features with the new head; the sleep
phase distils, on generated samples, the pre-wake model's old heads (tasks < t) and the post-wake
model's new head (task t) into M_ctx, whose features now receive gradients.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from implementations.common.streams import Task
from implementations.mygo.networks import Z_DIM, Discriminator, Generator, NeocortexNet


def _standard_normal(rows: int, columns: int, rng: torch.Generator, device: str | torch.device) -> torch.Tensor:
    return torch.randn(rows, columns, generator=rng, device=rng.device).to(device)


def _labels(count: int, rng: torch.Generator, device: str | torch.device) -> torch.Tensor:
    return torch.randint(0, 2, (count,), generator=rng, device=rng.device).to(device)


def wake_phase(model: NeocortexNet, task: Task, *, epochs: int, batch_size: int, lr: float, rng: torch.Generator,
               faithful: bool = True, z_dim: int = Z_DIM) -> tuple[dict[str, torch.Tensor], Generator]:
    """Train head t (and, as described, the features) and a cGAN on task t's real data (§1.4).

    Per real batch: a head step on cross-entropy, a D step (mean of BCE on real images and on
    detached fakes conditioned on the batch's labels), a G step (non-saturating BCE). Labels are
    local (0/1). Returns head t's state and the trained generator.
    """
    device = task.x_train.device
    if faithful:
        for parameter in model.features.parameters():
            parameter.requires_grad_(False)  # the script's freeze; never undone (§1.6a)
    head = model.add_task_head(task.task_id)
    generator, discriminator = Generator(z_dim).to(device), Discriminator().to(device)
    learner_parameters = list(head.parameters()) if faithful else list(head.parameters()) + list(
        model.features.parameters())
    learner_optimizer = torch.optim.Adam(learner_parameters, lr=lr)
    generator_optimizer = torch.optim.Adam(generator.parameters(), lr=lr)
    discriminator_optimizer = torch.optim.Adam(discriminator.parameters(), lr=lr)
    model.train()
    n_samples = len(task.x_train)
    for _ in range(epochs):
        order = torch.randperm(n_samples, generator=rng, device=rng.device).to(device)
        for start in range(0, n_samples, batch_size):
            batch = order[start:start + batch_size]
            x, y = task.x_train[batch], task.y_train[batch]
            if faithful:
                with torch.no_grad():
                    features = model.features(x)
            else:
                features = model.features(x)
            head_loss = F.cross_entropy(head(features), y)
            learner_optimizer.zero_grad()
            head_loss.backward()
            learner_optimizer.step()

            fake = generator(_standard_normal(len(y), z_dim, rng, device), y)
            real_target, fake_target = torch.ones(len(y), 1, device=device), torch.zeros(len(y), 1, device=device)
            discriminator_loss = (F.binary_cross_entropy(discriminator(x, y), real_target)
                                  + F.binary_cross_entropy(discriminator(fake.detach(), y), fake_target)) / 2
            discriminator_optimizer.zero_grad()
            discriminator_loss.backward()
            discriminator_optimizer.step()

            fake = generator(_standard_normal(len(y), z_dim, rng, device), y)
            generator_loss = F.binary_cross_entropy(discriminator(fake, y), real_target)
            generator_optimizer.zero_grad()
            generator_loss.backward()
            generator_optimizer.step()
    return copy.deepcopy(head.state_dict()), generator


@dataclass(frozen=True)
class SleepRecord:
    """Instrumentation of one sleep: distillation losses and how far the weights moved."""

    first_loss: float
    last_loss: float
    max_loss: float
    mean_loss: float
    max_feature_change: float
    max_parameter_change: float


def _max_change(before: dict[str, torch.Tensor], model: nn.Module, prefix: str = "") -> float:
    """Largest absolute change of any parameter whose name starts with `prefix`."""
    with torch.no_grad():
        changes = [(parameter - before[name]).abs().max() for name, parameter in model.named_parameters()
                   if name.startswith(prefix)]
    return float(torch.stack(changes).max())


def faithful_teacher(model: NeocortexNet, task_id: int, head_state: dict[str, torch.Tensor]) -> Callable[[int], nn.Module]:
    """The script's teacher: a deep copy of M_ctx with head t reloaded from its own state (§1.5)."""
    teacher = copy.deepcopy(model)
    teacher.head(task_id).load_state_dict(head_state)
    teacher.eval()
    return lambda task_index: teacher


def as_described_teacher(pre_wake: NeocortexNet, post_wake: NeocortexNet, task_id: int) -> Callable[[int], nn.Module]:
    """Old tasks from the model before this wake, the new task from the model after it (§4.3)."""
    pre_wake.eval()
    post_wake.eval()
    return lambda task_index: post_wake if task_index == task_id else pre_wake


def sleep_phase(model: NeocortexNet, teacher_for: Callable[[int], nn.Module], generators: list[Generator], *,
                steps: int, batch_size: int, lr: float, rng: torch.Generator, z_dim: int = Z_DIM) -> SleepRecord:
    """Distil teacher logits into M_ctx on generated samples (§1.5).

    Adam(lr_slow) over all of M_ctx's parameters; each step picks a generator uniformly, draws
    uniform local labels and z, and minimises the MSE between the raw 2-d logits of the student's
    and the teacher's head for that task. Gradients also reach the generators, as in the script;
    they are never used.
    """
    device = next(model.parameters()).device
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    before = {name: parameter.detach().clone() for name, parameter in model.named_parameters()}
    losses = []
    for _ in range(steps):
        task_index = int(torch.randint(0, len(generators), (1,), generator=rng, device=rng.device))
        labels = _labels(batch_size, rng, device)
        pseudo_inputs = generators[task_index](_standard_normal(batch_size, z_dim, rng, device), labels)
        with torch.no_grad():
            target = teacher_for(task_index)(pseudo_inputs, task_index)
        loss = F.mse_loss(model(pseudo_inputs, task_index), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
    if not losses:
        return SleepRecord(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    stacked = torch.stack(losses)
    return SleepRecord(float(stacked[0]), float(stacked[-1]), float(stacked.max()), float(stacked.mean()),
                       _max_change(before, model, "features."), _max_change(before, model))
