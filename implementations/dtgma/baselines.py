"""The repository's own MLP baselines as coded (spec §3), quirks included, for its tables.

All share Linear(d_in,256) -> ReLU -> Linear(256,256) -> ReLU -> one shared Linear(256,C): a single
head whose output units every task re-uses. What differs is the training: full-batch Adam for
fine-tuning, EWC, HAT and PackNet; minibatch 32 with one Adam kept across tasks for DER++;
minibatch 64 for LoRA and Adapter. The generic, as-described methods live in
implementations/baselines/; these are the faithful versions the DTG-MA tables were made with.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from implementations.baselines.fisher import mean_squared_sample_gradients
from implementations.common.models import TaskConditioned
from implementations.common.streams import Task
from implementations.common.training import Strategy
from implementations.common.transfer import to_device

HIDDEN = 256


class SharedHeadMLP(nn.Module):
    """fc1 -> ReLU -> fc2 -> ReLU -> classifier; no task id (Fine-tune, EWC, PackNet, DER++)."""

    def __init__(self, input_dim: int, num_classes: int):
        super().__init__()
        self.fc1 = nn.Linear(input_dim, HIDDEN)
        self.fc2 = nn.Linear(HIDDEN, HIDDEN)
        self.classifier = nn.Linear(HIDDEN, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(F.relu(self.fc2(F.relu(self.fc1(x)))))


# --- EWC ---------------------------------------------------------------------------------------


def empirical_fisher(model: nn.Module, x: torch.Tensor, y: torch.Tensor, task_id: int,
                     chunk: int = 250) -> dict[str, torch.Tensor]:
    """Mean over samples of the squared per-sample gradient of the true label's log-likelihood.

    Computed in eval mode (BatchNorm uses its running statistics, so samples stay independent),
    `chunk` samples at a time.
    """
    batches = ((x[start:start + chunk], y[start:start + chunk]) for start in range(0, len(x), chunk))
    names = [name for name, _ in model.named_parameters()]
    return mean_squared_sample_gradients(model, batches, names, _log_likelihood_per_sample, task_id)


def _log_likelihood_per_sample(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.log_softmax(logits, dim=1).gather(1, y.unsqueeze(1)).squeeze(1)


class FaithfulEWC(Strategy):
    """EWC of baselines.py (spec §3): Fishers summed over tasks, anchor overwritten, lambda*sum F(d)^2, no 1/2.

    fisher_samples: how many of the task's first training samples the Fisher uses (all for the MLP
    baseline; 200 in the CNN baseline).
    """

    def __init__(self, ewc_lambda: float = 1000.0, fisher_samples: int | None = None):
        self.ewc_lambda, self.fisher_samples = ewc_lambda, fisher_samples
        self.fisher: dict[str, torch.Tensor] = {}
        self.anchor: dict[str, torch.Tensor] = {}

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: Task) -> torch.Tensor:
        loss = F.cross_entropy(self.forward(model, x, task), y)
        if self.fisher:
            penalty = sum((self.fisher[name] * (p - self.anchor[name]).pow(2)).sum()
                          for name, p in model.named_parameters())
            loss = loss + self.ewc_lambda * penalty
        return loss

    def after_task(self, model: nn.Module, task: Task) -> None:
        count = len(task.x_train) if self.fisher_samples is None else self.fisher_samples
        fisher = empirical_fisher(model, task.x_train[:count], task.y_train[:count], task.task_id)
        for name, value in fisher.items():
            self.fisher[name] = self.fisher[name] + value if name in self.fisher else value
        self.anchor = {name: p.detach().clone() for name, p in model.named_parameters()}


# --- HAT ---------------------------------------------------------------------------------------


class HATMLP(TaskConditioned):
    """The shared-head MLP with per-task unit gates sigma(s*e) after fc1 and fc2 (spec §3, HAT row)."""

    def __init__(self, input_dim: int, num_classes: int, n_tasks: int):
        super().__init__()
        self.fc1 = nn.Linear(input_dim, HIDDEN)
        self.fc2 = nn.Linear(HIDDEN, HIDDEN)
        self.classifier = nn.Linear(HIDDEN, num_classes)
        self.embedding1 = nn.Parameter(torch.randn(n_tasks, HIDDEN) * 0.1)
        self.embedding2 = nn.Parameter(torch.randn(n_tasks, HIDDEN) * 0.1)
        self.scale = 400.0  # s; annealed during training, s_max at test

    def gates(self, task_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.sigmoid(self.scale * self.embedding1[task_id]), torch.sigmoid(self.scale * self.embedding2[task_id])

    def forward(self, x: torch.Tensor, task_id: int) -> torch.Tensor:
        gate1, gate2 = self.gates(task_id)
        h = F.relu(self.fc1(x)) * gate1
        return self.classifier(F.relu(self.fc2(h)) * gate2)

    def task_registered_parameters(self) -> list[nn.Parameter]:
        """The gate embeddings e1, e2 (one row per task). experiments.py's count does not include them.

        The spec does not say how baselines.py stores HAT's embeddings. But experiments.py printed
        267K / 855K / 272K for HAT on MNIST / CIFAR-100 / Omniglot, which is the base MLP's
        267,266 / 855,050 / 271,892. With the embeddings counted it would be 269,826 / 860,170 /
        277,012. So the model that experiments.py counted held no embeddings, and they count as
        per-task parameters, like DTG-MA's per-task modules. parameter_count_trained includes them.
        """
        return [self.embedding1, self.embedding2]


class FaithfulHAT(Strategy):
    """HAT of baselines.py: s = 1 + 399*epoch/E, regulariser 0.01*sum(a) + 10*sum_prev sum(a*mask_prev),
    binary masks e > 0 after each task, gradients zeroed on the fc1/fc2 weight rows earlier tasks
    use. Biases, the shared classifier and the embeddings are unprotected (spec §3)."""

    S_MAX = 400.0

    def __init__(self, epochs: int, steps_per_epoch: int):
        self.epochs, self.steps_per_epoch = epochs, steps_per_epoch
        self.previous_masks: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.used: tuple[torch.Tensor, torch.Tensor] | None = None  # rows earlier tasks use, as [rows, 1]
        self.step = 0

    def _anneal(self, model: HATMLP) -> None:
        epoch = self.step // self.steps_per_epoch
        model.scale = 1.0 + (self.S_MAX - 1.0) * epoch / self.epochs

    def before_task(self, model: nn.Module, task: Task) -> None:
        self.step = 0
        self._anneal(model)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: Task) -> torch.Tensor:
        loss = F.cross_entropy(model(x, task.task_id), y)
        gate1, gate2 = model.gates(task.task_id)
        regulariser = 0.01 * (gate1.sum() + gate2.sum())
        for mask1, mask2 in self.previous_masks:
            regulariser = regulariser + 10.0 * ((gate1 * mask1).sum() + (gate2 * mask2).sum())
        return loss + regulariser

    def after_backward(self, model: nn.Module, task: Task) -> None:
        if self.used is None:
            return
        model.fc1.weight.grad.masked_fill_(self.used[0], 0.0)  # no boolean index: no host sync
        model.fc2.weight.grad.masked_fill_(self.used[1], 0.0)

    def after_step(self, model: nn.Module, task: Task) -> None:
        self.step += 1
        self._anneal(model)

    def after_task(self, model: nn.Module, task: Task) -> None:
        self.previous_masks.append(((model.embedding1[task.task_id] > 0).float().detach(),
                                    (model.embedding2[task.task_id] > 0).float().detach()))
        self.used = (torch.stack([m for m, _ in self.previous_masks]).amax(0).bool().unsqueeze(1),
                     torch.stack([m for _, m in self.previous_masks]).amax(0).bool().unsqueeze(1))
        model.scale = self.S_MAX


# --- PackNet -----------------------------------------------------------------------------------


class FaithfulPackNet(Strategy):
    """PackNet of baselines.py: after each task prune the smallest half of the free fc1/fc2 weights to
    zero and freeze the rest. After task 0 nothing is free (spec §3, the bug): later tasks change
    only biases and the shared classifier. No per-task masks at test, no retraining after pruning.

    mask_gradients=False is the CNN variant: its frozen mask is never applied to gradients.
    """

    def __init__(self, layer_names: tuple[str, ...] = ("fc1", "fc2"), prune_ratio: float = 0.5,
                 mask_gradients: bool = True):
        self.layer_names, self.prune_ratio, self.mask_gradients = layer_names, prune_ratio, mask_gradients
        self.pruned: dict[str, torch.Tensor] = {}
        self.frozen: dict[str, torch.Tensor] = {}
        self.locked: dict[str, torch.Tensor] = {}  # frozen | pruned, made once per task

    def _weights(self, model: nn.Module) -> dict[str, nn.Parameter]:
        return {name: model.get_submodule(name).weight for name in self.layer_names}

    def after_backward(self, model: nn.Module, task: Task) -> None:
        if not self.mask_gradients:
            return
        for name, weight in self._weights(model).items():
            if name in self.locked:
                weight.grad.masked_fill_(self.locked[name], 0.0)  # no boolean index: no host sync

    def after_step(self, model: nn.Module, task: Task) -> None:
        if not self.mask_gradients:
            return
        with torch.no_grad():
            for name, weight in self._weights(model).items():
                if name in self.pruned:
                    weight.masked_fill_(self.pruned[name], 0.0)

    def after_task(self, model: nn.Module, task: Task) -> None:
        with torch.no_grad():
            for name, weight in self._weights(model).items():
                pruned = self.pruned.get(name, torch.zeros_like(weight, dtype=torch.bool))
                frozen = self.frozen.get(name, torch.zeros_like(weight, dtype=torch.bool))
                free = ~(pruned | frozen)
                n_free = int(free.sum())
                if n_free:
                    n_prune = int(self.prune_ratio * n_free)
                    magnitudes = weight.abs()[free]
                    threshold = magnitudes.kthvalue(n_prune).values if n_prune else magnitudes.min() - 1
                    newly_pruned = free & (weight.abs() <= threshold)
                    pruned = pruned | newly_pruned
                    frozen = frozen | (free & ~newly_pruned)
                    weight[newly_pruned] = 0.0
                self.pruned[name], self.frozen[name] = pruned, frozen
                self.locked[name] = frozen | pruned


# --- DER++ -------------------------------------------------------------------------------------


class FaithfulDERPP(Strategy):
    """DER++ of baselines.py: a FIFO ring of the last `buffer_size` training samples with their logits.

    Loss: CE + beta*CE(replay) + alpha*MSE(replay logits, stored logits), replay batch min(32, count)
    drawn without replacement (torch's global generator). The ring, not reservoir sampling, means
    the buffer soon holds only the current task (spec §3).
    """

    def __init__(self, buffer_size: int = 500, alpha: float = 0.5, beta: float = 0.5, replay_batch: int = 32):
        self.buffer_size, self.alpha, self.beta, self.replay_batch = buffer_size, alpha, beta, replay_batch
        self.count = 0
        self.position = 0
        self.x = self.y = self.logits = None
        self.pending = None

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: Task) -> torch.Tensor:
        logits = self.forward(model, x, task)
        loss = F.cross_entropy(logits, y)
        if self.count:
            chosen = to_device(torch.randperm(self.count)[:min(self.replay_batch, self.count)], x.device)
            replay_logits = self.forward(model, self.x[chosen], task)
            loss = (loss + self.beta * F.cross_entropy(replay_logits, self.y[chosen])
                    + self.alpha * F.mse_loss(replay_logits, self.logits[chosen]))
        self.pending = (x, y, logits.detach())
        return loss

    def after_step(self, model: nn.Module, task: Task) -> None:
        x, y, logits = self.pending
        if self.x is None:
            self.x = x.new_zeros((self.buffer_size, *x.shape[1:]))
            self.y = y.new_zeros(self.buffer_size)
            self.logits = logits.new_zeros((self.buffer_size, logits.shape[1]))
        slots = (self.position + torch.arange(len(x), device=x.device)) % self.buffer_size  # the ring wraps
        self.x[slots], self.y[slots], self.logits[slots] = x, y, logits
        self.position = (self.position + len(x)) % self.buffer_size
        self.count = min(self.count + len(x), self.buffer_size)


# --- LoRA and Adapter (experiments.py) ---------------------------------------------------------


class LoRAMLP(TaskConditioned):
    """h1 = ReLU(W1 x + b1 + x A_t B_t), rank 4 on fc1 only; all T adapters pre-allocated (spec §3)."""

    def __init__(self, input_dim: int, num_classes: int, n_tasks: int, rank: int = 4):
        super().__init__()
        self.fc1 = nn.Linear(input_dim, HIDDEN)
        self.fc2 = nn.Linear(HIDDEN, HIDDEN)
        self.classifier = nn.Linear(HIDDEN, num_classes)
        self.lora_a = nn.ParameterList(nn.Parameter(torch.randn(input_dim, rank) * 0.01) for _ in range(n_tasks))
        self.lora_b = nn.ParameterList(nn.Parameter(torch.zeros(rank, HIDDEN)) for _ in range(n_tasks))

    def forward(self, x: torch.Tensor, task_id: int) -> torch.Tensor:
        h = F.relu(self.fc1(x) + (x @ self.lora_a[task_id]) @ self.lora_b[task_id])
        return self.classifier(F.relu(self.fc2(h)))

    def task_modules(self, task_id: int) -> list[nn.Parameter]:
        return [self.lora_a[task_id], self.lora_b[task_id]]


class AdapterMLP(TaskConditioned):
    """h1 <- h1 + Up_t(ReLU(Down_t h1)) after fc1, bottleneck 64, default init (spec §3)."""

    def __init__(self, input_dim: int, num_classes: int, n_tasks: int, bottleneck: int = 64):
        super().__init__()
        self.fc1 = nn.Linear(input_dim, HIDDEN)
        self.fc2 = nn.Linear(HIDDEN, HIDDEN)
        self.classifier = nn.Linear(HIDDEN, num_classes)
        self.adapters = nn.ModuleList(
            nn.Sequential(nn.Linear(HIDDEN, bottleneck), nn.ReLU(), nn.Linear(bottleneck, HIDDEN))
            for _ in range(n_tasks))

    def forward(self, x: torch.Tensor, task_id: int) -> torch.Tensor:
        h = F.relu(self.fc1(x))
        h = h + self.adapters[task_id](h)
        return self.classifier(F.relu(self.fc2(h)))

    def task_modules(self, task_id: int) -> list[nn.Parameter]:
        return list(self.adapters[task_id].parameters())


class FreezeEncoderAfterFirstTask(Strategy):
    """LoRA / Adapter training of experiments.py: task 0 trains everything, then fc1 and fc2 are frozen."""

    def after_task(self, model: nn.Module, task: Task) -> None:
        if task.task_id == 0:
            for parameter in (*model.fc1.parameters(), *model.fc2.parameters()):
                parameter.requires_grad_(False)


def adapter_adam(lr: float):
    """Task 0: Adam over every parameter; later tasks: the task's adapter and the shared classifier."""

    def make_optimizer(model: LoRAMLP | AdapterMLP, task_id: int) -> torch.optim.Optimizer:
        if task_id == 0:
            return torch.optim.Adam(model.parameters(), lr=lr)
        return torch.optim.Adam([*model.task_modules(task_id), *model.classifier.parameters()], lr=lr)

    return make_optimizer
