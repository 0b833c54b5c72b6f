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
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from implementations.common.streams import Task
from implementations.common.training import Batch, Strategy, train_steps, train_task
from implementations.mygo.networks import Z_DIM, Discriminator, Generator, NeocortexNet


def _standard_normal(rows: int, columns: int, rng: torch.Generator, device: str | torch.device) -> torch.Tensor:
    return torch.randn(rows, columns, generator=rng, device=rng.device).to(device)


def _labels(count: int, rng: torch.Generator, device: str | torch.device) -> torch.Tensor:
    return torch.randint(0, 2, (count,), generator=rng, device=rng.device).to(device)


class WakePhase(Strategy):
    """Per real batch: a step of the learner (head t, and as described the features) on cross-entropy,
    a D step (mean of BCE on real images and on detached fakes conditioned on the batch's labels), a
    G step (non-saturating BCE) (§1.4). The GAN noise comes from `rng`, which also draws the batch order."""

    def __init__(self, generator: Generator, discriminator: Discriminator, *, lr: float, rng: torch.Generator,
                 faithful: bool, z_dim: int):
        self.generator, self.discriminator = generator, discriminator
        self.generator_optimizer = torch.optim.Adam(generator.parameters(), lr=lr)
        self.discriminator_optimizer = torch.optim.Adam(discriminator.parameters(), lr=lr)
        self.rng, self.faithful, self.z_dim = rng, faithful, z_dim

    def loss(self, model: NeocortexNet, x: torch.Tensor, y: torch.Tensor, task: Task) -> torch.Tensor:
        # The script computes the frozen features without a graph; as described they train.
        with torch.set_grad_enabled(not self.faithful):
            features = model.features(x)
        return F.cross_entropy(model.head(task.task_id)(features), y)

    def training_step(self, model: NeocortexNet, batch: Batch, task: Task, optimizer: torch.optim.Optimizer) -> None:
        super().training_step(model, batch, task, optimizer)
        x, y = batch
        device = x.device
        fake = self.generator(_standard_normal(len(y), self.z_dim, self.rng, device), y)
        real_target, fake_target = torch.ones(len(y), 1, device=device), torch.zeros(len(y), 1, device=device)
        discriminator_loss = (F.binary_cross_entropy(self.discriminator(x, y), real_target)
                              + F.binary_cross_entropy(self.discriminator(fake.detach(), y), fake_target)) / 2
        self.discriminator_optimizer.zero_grad()
        discriminator_loss.backward()
        self.discriminator_optimizer.step()

        fake = self.generator(_standard_normal(len(y), self.z_dim, self.rng, device), y)
        generator_loss = F.binary_cross_entropy(self.discriminator(fake, y), real_target)
        self.generator_optimizer.zero_grad()
        generator_loss.backward()
        self.generator_optimizer.step()


def wake_phase(model: NeocortexNet, task: Task, *, epochs: int, batch_size: int, lr: float, rng: torch.Generator,
               faithful: bool = True, z_dim: int = Z_DIM) -> tuple[dict[str, torch.Tensor], Generator]:
    """Train head t (and, as described, the features) and a cGAN on task t's real data (§1.4), with
    the one training loop: `rng` draws the batch order and the noise. Labels are local (0/1).
    Returns head t's state and the trained generator.
    """
    device = task.x_train.device
    if faithful:
        for parameter in model.features.parameters():
            parameter.requires_grad_(False)  # the script's freeze; never undone (§1.6a)
    # Head, G and D are initialised in this order from the global generator, as in the script.
    head = model.add_task_head(task.task_id)
    wake = WakePhase(Generator(z_dim).to(device), Discriminator().to(device), lr=lr, rng=rng, faithful=faithful,
                     z_dim=z_dim)
    learner_parameters = list(head.parameters()) if faithful else list(head.parameters()) + list(
        model.features.parameters())
    train_task(model, wake, task, epochs=epochs, batch_size=batch_size,
               optimizer=torch.optim.Adam(learner_parameters, lr=lr), generator=rng)
    return copy.deepcopy(head.state_dict()), wake.generator


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


class Distillation(Strategy):
    """One sleep step: MSE between the student's and the teacher's raw logits of the batch's task head."""

    def __init__(self, teacher_for: Callable[[int], nn.Module]):
        self.teacher_for = teacher_for
        self.losses: list[torch.Tensor] = []

    def training_step(self, model: NeocortexNet, batch: Batch, task: None, optimizer: torch.optim.Optimizer) -> None:
        pseudo_inputs, task_index = batch
        with torch.no_grad():
            target = self.teacher_for(task_index)(pseudo_inputs, task_index)
        loss = F.mse_loss(model(pseudo_inputs, task_index), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        self.losses.append(loss.detach())


def generated_batches(generators: list[Generator], *, steps: int, batch_size: int, rng: torch.Generator,
                      z_dim: int, device: str | torch.device) -> Iterator[Batch]:
    """(pseudo-inputs, task index) per step: a generator picked uniformly, uniform local labels, z.

    Drawn lazily, one step at a time, in the script's order (task, labels, z). The pseudo-inputs
    keep their graph, so gradients also reach the generators, as in the script; they are never used.
    """
    for _ in range(steps):
        task_index = int(torch.randint(0, len(generators), (1,), generator=rng, device=rng.device))
        labels = _labels(batch_size, rng, device)
        yield generators[task_index](_standard_normal(batch_size, z_dim, rng, device), labels), task_index


def sleep_phase(model: NeocortexNet, teacher_for: Callable[[int], nn.Module], generators: list[Generator], *,
                steps: int, batch_size: int, lr: float, rng: torch.Generator, z_dim: int = Z_DIM) -> SleepRecord:
    """Distil teacher logits into M_ctx on generated samples (§1.5), with the one training loop.

    Adam(lr_slow) over all of M_ctx's parameters; no real data is read (the batches belong to no task).
    """
    device = next(model.parameters()).device
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    before = {name: parameter.detach().clone() for name, parameter in model.named_parameters()}
    distillation = Distillation(teacher_for)
    train_steps(model, distillation, None, generated_batches(generators, steps=steps, batch_size=batch_size, rng=rng,
                                                            z_dim=z_dim, device=device), optimizer)
    if not distillation.losses:
        return SleepRecord(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    stacked = torch.stack(distillation.losses)
    return SleepRecord(float(stacked[0]), float(stacked[-1]), float(stacked.max()), float(stacked.mean()),
                       _max_change(before, model, "features."), _max_change(before, model))
