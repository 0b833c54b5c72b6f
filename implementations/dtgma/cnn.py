"""The CNN/ResNet variant and its baselines (spec §1.8, §2.6, §3 "CNN baselines").

ResNet18_MNIST: 1x28x28 input, 3x3 stride-1 stem, no max-pool, stages 64/128/256/512 of two
BasicBlocks each, global average pooling, 512-d output (11,167,680 parameters). DTG-MA on top of
it trains everything on task 0 and freezes the backbone afterwards; later tasks still run in
train mode, so the frozen backbone's BatchNorm statistics keep moving (the original's behaviour),
unless `freeze_backbone_statistics` keeps the backbone in eval mode (the control).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from implementations.common.models import TaskConditioned
from implementations.common.streams import Task
from implementations.common.training import Strategy
from implementations.dtgma.model import DTGMAModel


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                          nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18MNIST(nn.Module):
    """ResNet-18 for 28x28x1 images as the code ran it (not the paper's 32x32x3)."""

    output_dim = 512

    def __init__(self, in_channels: int = 1):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
        stages, width = [], 64
        for out_channels, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            stages += [BasicBlock(width, out_channels, stride), BasicBlock(out_channels, out_channels, 1)]
            width = out_channels
        self.stages = nn.Sequential(*stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(self.stages(self.stem(x)), 1).flatten(1)


class DTGMAWithCNN(TaskConditioned):
    """image -> backbone -> DTG-MA block (d_in 512, d 256, H 4, L 2) -> task head (spec §1.8)."""

    def __init__(self, num_classes: int, n_tasks_max: int = 20, freeze_backbone_statistics: bool = False):
        super().__init__()
        self.backbone = ResNet18MNIST()
        self.dtgma = DTGMAModel(ResNet18MNIST.output_dim, 256, num_classes, n_tasks_max=n_tasks_max)
        self.freeze_backbone_statistics = freeze_backbone_statistics
        self.backbone_frozen = False

    def train(self, mode: bool = True) -> DTGMAWithCNN:
        super().train(mode)
        if self.backbone_frozen and self.freeze_backbone_statistics:
            self.backbone.eval()  # the control: BatchNorm running statistics stay as task 0 left them
        return self

    def forward(self, x: torch.Tensor, task_id: int) -> torch.Tensor:
        return self.dtgma(self.backbone(x), task_id)

    def task_registered_parameters(self) -> list[nn.Parameter]:
        """The DTG-MA block's per-task modules and heads (the parameter-count rule's per-task set)."""
        return self.dtgma.task_registered_parameters()


class DTGMACNNTraining(Strategy):
    """train_dtgma_cnn: after task 0 the backbone gets requires_grad=False; every task's modules freeze."""

    def after_task(self, model: DTGMAWithCNN, task: Task) -> None:
        model.dtgma.freeze_task(task.task_id)
        if task.task_id == 0:
            for parameter in (*model.backbone.parameters(), *model.dtgma.shared_parameters().values()):
                parameter.requires_grad_(False)
            model.backbone_frozen = True


def dtgma_cnn_adam(lr: float):
    """Task 0: backbone, input projection, LayerNorms and task-0 modules; later: the task's own modules."""

    def make_optimizer(model: DTGMAWithCNN, task_id: int) -> torch.optim.Optimizer:
        parameters = model.dtgma.task_parameters(task_id)
        if task_id == 0:
            parameters = [*model.backbone.parameters(), *model.dtgma.shared_parameters().values(), *parameters]
        return torch.optim.Adam(parameters, lr=lr)

    return make_optimizer


class ResNetSharedHead(nn.Module):
    """Fine-tune / EWC / DER++ + ResNet: backbone and one shared Linear(512, C)."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.backbone = ResNet18MNIST()
        self.classifier = nn.Linear(ResNet18MNIST.output_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.backbone(x))


class ResNetExtraLayer(nn.Module):
    """PackNet + ResNet: backbone -> fc 512->512 -> ReLU -> shared head; only `fc` is ever pruned."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.backbone = ResNet18MNIST()
        self.fc = nn.Linear(ResNet18MNIST.output_dim, ResNet18MNIST.output_dim)
        self.classifier = nn.Linear(ResNet18MNIST.output_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(F.relu(self.fc(self.backbone(x))))


class ResNetHAT(TaskConditioned):
    """HAT + ResNet: backbone -> fc 512->512 -> ReLU -> gate sigma(s e_t) -> shared head."""

    def __init__(self, num_classes: int, n_tasks: int):
        super().__init__()
        self.backbone = ResNet18MNIST()
        self.fc = nn.Linear(ResNet18MNIST.output_dim, ResNet18MNIST.output_dim)
        self.embedding = nn.Parameter(torch.randn(n_tasks, ResNet18MNIST.output_dim) * 0.1)
        self.classifier = nn.Linear(ResNet18MNIST.output_dim, num_classes)
        self.scale = 400.0

    def gate(self, task_id: int) -> torch.Tensor:
        return torch.sigmoid(self.scale * self.embedding[task_id])

    def task_registered_parameters(self) -> list[nn.Parameter]:
        """The gate embeddings, one row per task. They are per-task, as in HATMLP.

        cnn_experiments.py counts after training, so its 11,433,922 includes all of them (spec §1.6, §4 #12).
        """
        return [self.embedding]

    def forward(self, x: torch.Tensor, task_id: int) -> torch.Tensor:
        return self.classifier(F.relu(self.fc(self.backbone(x))) * self.gate(task_id))


class ResNetHATRegulariserOnly(Strategy):
    """HAT + CNN as coded: the gate regulariser and s annealing, and no gradient masking at all (spec §3)."""

    S_MAX = 400.0

    def __init__(self, epochs: int, steps_per_epoch: int):
        self.epochs, self.steps_per_epoch = epochs, steps_per_epoch
        self.previous_masks: list[torch.Tensor] = []
        self.step = 0

    def _anneal(self, model: ResNetHAT) -> None:
        model.scale = 1.0 + (self.S_MAX - 1.0) * (self.step // self.steps_per_epoch) / self.epochs

    def before_task(self, model: nn.Module, task: Task) -> None:
        self.step = 0
        self._anneal(model)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: Task) -> torch.Tensor:
        gate = model.gate(task.task_id)
        regulariser = 0.01 * gate.sum() + sum(10.0 * (gate * mask).sum() for mask in self.previous_masks)
        return F.cross_entropy(model(x, task.task_id), y) + regulariser

    def after_step(self, model: nn.Module, task: Task) -> None:
        self.step += 1
        self._anneal(model)

    def after_task(self, model: nn.Module, task: Task) -> None:
        self.previous_masks.append((model.embedding[task.task_id] > 0).float().detach())
        model.scale = self.S_MAX


def batchnorm_running_means(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: m.running_mean.detach().clone() for name, m in module.named_modules()
            if isinstance(m, nn.BatchNorm2d)}
