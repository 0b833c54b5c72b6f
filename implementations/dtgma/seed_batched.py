"""`baseline_table` for several seeds in one pass: each minibatch method's models of every seed stacked.

The package's seed-batched forms (`FORMS`, protocol -> form), found by the runner beside the protocols:
protocols.py never imports this module, so a sequential run's code version never covers batched code.

Why: a step of the table's small models is bound by kernel launches and Python on a GPU (the table ran no
faster on an H200 than on one CPU core), so stepping every seed's model with the launches of one is what
pays. The methods that take minibatches are batched: DTG-MA (64-sample batches of a two-layer attention
model with eight dropouts per step), LoRA and Adapter (64) and DER++ (32, plus a replayed batch). The
full-batch methods (fine-tuning, EWC, HAT, PackNet: one step per epoch) run seed by seed, through the
protocol's own `compare_methods`, which re-seeds before each method, so a method's numbers never depend
on which others ran, here or in the sequential run.

Each seed stays its own run, with what `baseline_table(context=c, ...)` gives it for seed s's run context `c`
after the engine's `c.reseed()`:

* its tasks: the benchmark's stream for that seed (Omniglot's character split depends on it);
* its initial weights: per method, `seed_everything(seed)` (as `compare_methods` re-seeds), then the protocol's own `_faithful_method`
  builds the model (DTG-MA's with every task registered), as `compare_methods` does before training it;
* its batch order: `torch_generator(seed)`, one `randperm` per task and epoch, as `run_stream` draws it;
* DTG-MA's dropout: the global generator's state right after the model is built (nothing else draws
  from it while the method trains), replayed per epoch by `DropoutStream` in the sequential order: per
  step, layer by layer, the attention weights', the residual's and the FFN's two dropouts;
* DER++'s replay: its ring buffer per seed (the same slots for every seed: batch sizes do not depend on
  the seed) and `torch.randperm(count)` on a copy of the global CPU generator taken right after the
  seed's model is built, as the sequential run draws it from the global generator;
* its optimizer: the method's Adam over the stacked tensors (Adam's update is elementwise): DTG-MA a
  fresh one per task over the task's Q/K/V/O, FFNs and head (the input projection and LayerNorms are
  never stepped); LoRA and Adapter everything on task 0, then the task's adapter and the classifier,
  with fc1 and fc2 frozen; DER++ one for the whole stream;
* DTG-MA's LayerNorms: the seed's own modules, called on the seed's rows (stacking them would fuse the
  affine differently and change the last bits); DER++'s loss terms formed per seed as the sequential
  loss forms them (a mean-reduced loss's backward scales differently from a per-row one);
* its evaluation: `accuracy`'s chunks of 1024 rows, per task id, in eval mode (no dropout); then the
  trained stacked tensors are copied back into the seed's model (frozen as the strategy leaves it),
  which answers the parameter counts and DTG-MA's task-agnostic probe.

`<method>_seconds` of a batched method is its batched training's wall time shared evenly among the seeds.

Equality with the sequential run: the products are batched gemms whose backward mirrors `nn.Linear`'s
(`implementations.common.seed_batching`), and the attention's 1-token products are the same small batched
products the sequential run forms. With one CPU thread every output but the seconds is bitwise the
sequential one (tests/test_dtgma_batched.py). With more threads, or on CUDA, the last bits may differ.
"""

from __future__ import annotations

import inspect
import math
import pathlib
import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from implementations.common.run_context import RunContext
from implementations.common.seed_batching import (
    DropoutStream,
    ReplayedDropout,
    SeedBatchedLinear,
    correct_counts,
    seed_batched_steps,
    summed_mean_cross_entropy,
)
from implementations.common.seeding import seed_everything, torch_generator
from implementations.common.training import MethodResult, compare_methods
from implementations.dtgma import baselines, protocols
from implementations.dtgma.model import DTGMAModel, TaskAttention, _task_key

BATCHED_METHODS = ("dtgma", "lora", "adapter", "derpp")
_EVALUATION_BATCH = 1024  # `evaluation.accuracy`'s chunk


class _Stacked(nn.Module):
    """What the batched loop asks of a stacked method: forward(x, task_id), the training loss of a batch,
    the optimizer, and the strategy's hooks."""

    def loss(self, x: torch.Tensor, y: torch.Tensor, task_id: int) -> torch.Tensor:
        return summed_mean_cross_entropy(self(x, task_id), y)

    def after_step(self) -> None:
        """Strategy.after_step (nothing by default)."""

    def after_task(self, task_id: int) -> None:
        """Strategy.after_task, as far as it changes later steps (nothing by default)."""

    def dropouts(self, task_id: int) -> list[ReplayedDropout]:
        """Dropouts a training forward on the task draws from, in its order (none by default)."""
        return []

    def make_optimizer(self, task_id: int, lr: float) -> torch.optim.Optimizer:
        """The method's optimizer over the stacked tensors, as its make_optimizer builds it for `task_id`."""
        raise NotImplementedError

    def copy_back(self) -> None:
        """Every seed's trained tensors into its own model, left as the strategy leaves it."""
        raise NotImplementedError


class _StackedAttention(nn.Module):
    """One task's TaskAttention of every seed; inputs (seeds, batch, d_model), one token per sample."""

    def __init__(self, same: Sequence[TaskAttention]):
        super().__init__()
        first = same[0]
        self.n_heads, self.d_head = first.n_heads, first.d_head
        self.query = SeedBatchedLinear([attention.query for attention in same])
        self.key = SeedBatchedLinear([attention.key for attention in same])
        self.value = SeedBatchedLinear([attention.value for attention in same])
        self.output = SeedBatchedLinear([attention.output for attention in same])
        self.attention_dropout = ReplayedDropout(first.attention_dropout.p, (self.n_heads, 1, 1))

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        seeds, batch, _ = x.shape  # (seeds, batch, H, 1, d_head): the sequential (batch, H, 1, d_head) per seed
        return x.view(seeds, batch, 1, self.n_heads, self.d_head).transpose(2, 3)

    def forward(self, u: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split_heads(self.query(u)), self._split_heads(self.key(u)), self._split_heads(self.value(u))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_head) + mask
        weights = self.attention_dropout(torch.softmax(scores, dim=-1))
        seeds, batch = weights.shape[:2]
        heads = (weights @ v).transpose(2, 3).reshape(seeds, batch, self.n_heads * self.d_head)
        return self.output(heads)

    def copy_seed_into(self, seed_index: int, attention: TaskAttention) -> None:
        for name in ("query", "key", "value", "output"):
            getattr(self, name).copy_seed_into(seed_index, getattr(attention, name))


class _StackedFFN(nn.Module):
    """task_ffn of every seed: Linear, ReLU, Dropout, Linear, Dropout."""

    def __init__(self, same: Sequence[nn.Sequential]):
        super().__init__()
        self.expand = SeedBatchedLinear([ffn[0] for ffn in same])
        self.contract = SeedBatchedLinear([ffn[3] for ffn in same])
        self.hidden_dropout = ReplayedDropout(same[0][2].p, (1, self.expand.weight.shape[1]))
        self.output_dropout = ReplayedDropout(same[0][4].p, (1, self.contract.weight.shape[1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_dropout(self.contract(self.hidden_dropout(torch.relu(self.expand(x)))))

    def copy_seed_into(self, seed_index: int, ffn: nn.Sequential) -> None:
        self.expand.copy_seed_into(seed_index, ffn[0])
        self.contract.copy_seed_into(seed_index, ffn[3])


def _per_seed(norms: Sequence[nn.LayerNorm], h: torch.Tensor) -> torch.Tensor:
    return torch.stack([norm(rows) for norm, rows in zip(norms, h)])


class _StackedDTGMA(_Stacked):
    """DTGMAModel of every seed: forward(x (seeds, batch, input_dim), task_id) -> (seeds, batch, classes).

    Holds the seeds' own models for their LayerNorms (never stepped) and to copy the trained tensors
    back into; the input projection, never stepped either, is stacked without gradients.
    """

    def __init__(self, models: Sequence[DTGMAModel]):
        super().__init__()
        self.models = list(models)
        self.input_projection = SeedBatchedLinear([model.input_projection for model in models]).requires_grad_(False)
        keys = list(models[0].heads)
        self.attention = nn.ModuleList(
            nn.ModuleDict({key: _StackedAttention([model.layers[index].attention[key] for model in models])
                           for key in keys})
            for index in range(len(models[0].layers)))
        self.ffn = nn.ModuleList(
            nn.ModuleDict({key: _StackedFFN([model.layers[index].ffn[key] for model in models]) for key in keys})
            for index in range(len(models[0].layers)))
        self.residual_dropout = nn.ModuleList(
            ReplayedDropout(layer.residual_dropout.p, (1, layer.d_model)) for layer in models[0].layers)
        self.heads = nn.ModuleDict({key: SeedBatchedLinear([model.heads[key] for model in models]) for key in keys})
        masks = [torch.stack([layer.task_masks for layer in model.layers]) for model in models]
        if any(not torch.equal(mask, masks[0]) for mask in masks):
            raise ValueError("the seeds' models register different tasks")

    def forward(self, x: torch.Tensor, task_id: int) -> torch.Tensor:
        key = _task_key(task_id)
        h = self.input_projection(x)
        for index, layers in enumerate(zip(*(model.layers for model in self.models))):
            mask = layers[0].task_masks[task_id, :, :1, :1]  # one token per sample: the layer's slice
            normed = _per_seed([layer.norm_attention for layer in layers], h)
            h = h + self.residual_dropout[index](self.attention[index][key](normed, mask))
            h = h + self.ffn[index][key](_per_seed([layer.norm_ffn for layer in layers], h))
        return self.heads[key](h)

    def task_parameters(self, task_id: int) -> list[nn.Parameter]:
        key = _task_key(task_id)
        modules = [*(layer[key] for layer in self.attention), *(layer[key] for layer in self.ffn), self.heads[key]]
        return [parameter for module in modules for parameter in module.parameters()]

    def make_optimizer(self, task_id: int, lr: float) -> torch.optim.Optimizer:
        """`task_adam`: a fresh Adam over the task's own modules."""
        return torch.optim.Adam(self.task_parameters(task_id), lr=lr)

    def dropouts(self, task_id: int) -> list[ReplayedDropout]:
        """Task `task_id`'s dropouts in the order a training forward draws them."""
        key = _task_key(task_id)
        return [dropout for index in range(len(self.attention))
                for dropout in (self.attention[index][key].attention_dropout, self.residual_dropout[index],
                                self.ffn[index][key].hidden_dropout, self.ffn[index][key].output_dropout)]

    def copy_back(self) -> None:
        """Every seed's trained tensors into its own model."""
        for seed_index, model in enumerate(self.models):
            for index, layer in enumerate(model.layers):
                for key in layer.attention:
                    self.attention[index][key].copy_seed_into(seed_index, layer.attention[key])
                    self.ffn[index][key].copy_seed_into(seed_index, layer.ffn[key])
            for key, head in model.heads.items():
                self.heads[key].copy_seed_into(seed_index, head)
            for task_id in model.registered_tasks:
                model.freeze_task(task_id)


@torch.no_grad()
def _accuracy_rows(net: _StackedDTGMA, test_sets: Sequence[tuple[torch.Tensor, torch.Tensor]],
                   task_ids: Sequence[int]) -> list[list[float]]:
    """Per seed, test accuracy on every task with its own task id (`accuracy_row`)."""
    net.eval()
    correct = torch.zeros(test_sets[0][1].shape[0], len(test_sets), dtype=torch.int64, device=test_sets[0][1].device)
    for index, ((x, y), task_id) in enumerate(zip(test_sets, task_ids)):
        correct[:, index] = correct_counts(lambda rows: net(rows, task_id), x, y, _EVALUATION_BATCH)
    net.train()
    sizes = [y.shape[1] for _, y in test_sets]
    return [[count / size for count, size in zip(row, sizes)] for row in correct.tolist()]


class _StackedAdapterMLP(_Stacked):
    """LoRAMLP or AdapterMLP of every seed: forward(x (seeds, batch, input_dim), task_id)."""

    def __init__(self, models: Sequence[baselines.LoRAMLP | baselines.AdapterMLP]):
        super().__init__()
        self.models = list(models)
        self.lora = isinstance(models[0], baselines.LoRAMLP)
        self.fc1 = SeedBatchedLinear([model.fc1 for model in models])
        self.fc2 = SeedBatchedLinear([model.fc2 for model in models])
        self.classifier = SeedBatchedLinear([model.classifier for model in models])
        n_tasks = len(models[0].lora_a) if self.lora else len(models[0].adapters)
        if self.lora:
            self.lora_a = nn.ParameterList(nn.Parameter(torch.stack([model.lora_a[t].detach() for model in models]))
                                           for t in range(n_tasks))
            self.lora_b = nn.ParameterList(nn.Parameter(torch.stack([model.lora_b[t].detach() for model in models]))
                                           for t in range(n_tasks))
        else:
            self.down = nn.ModuleList(SeedBatchedLinear([model.adapters[t][0] for model in models])
                                      for t in range(n_tasks))
            self.up = nn.ModuleList(SeedBatchedLinear([model.adapters[t][2] for model in models])
                                    for t in range(n_tasks))

    def forward(self, x: torch.Tensor, task_id: int) -> torch.Tensor:
        if self.lora:
            h = torch.relu(self.fc1(x) + (x @ self.lora_a[task_id]) @ self.lora_b[task_id])
        else:
            h = torch.relu(self.fc1(x))
            h = h + self.up[task_id](torch.relu(self.down[task_id](h)))
        return self.classifier(torch.relu(self.fc2(h)))

    def task_modules(self, task_id: int) -> list[nn.Parameter]:
        if self.lora:
            return [self.lora_a[task_id], self.lora_b[task_id]]
        return [*self.down[task_id].parameters(), *self.up[task_id].parameters()]

    def make_optimizer(self, task_id: int, lr: float) -> torch.optim.Optimizer:
        """`adapter_adam`: everything on task 0, then the task's adapter and the shared classifier."""
        if task_id == 0:
            return torch.optim.Adam(self.parameters(), lr=lr)
        return torch.optim.Adam([*self.task_modules(task_id), *self.classifier.parameters()], lr=lr)

    def after_task(self, task_id: int) -> None:
        """FreezeEncoderAfterFirstTask."""
        if task_id == 0:
            for parameter in (*self.fc1.parameters(), *self.fc2.parameters()):
                parameter.requires_grad_(False)

    def copy_back(self) -> None:
        for seed_index, model in enumerate(self.models):
            for name in ("fc1", "fc2", "classifier"):
                getattr(self, name).copy_seed_into(seed_index, getattr(model, name))
            with torch.no_grad():
                if self.lora:
                    for t in range(len(model.lora_a)):
                        model.lora_a[t].copy_(self.lora_a[t][seed_index])
                        model.lora_b[t].copy_(self.lora_b[t][seed_index])
                else:
                    for t, adapter in enumerate(model.adapters):
                        self.down[t].copy_seed_into(seed_index, adapter[0])
                        self.up[t].copy_seed_into(seed_index, adapter[2])
            for parameter in (*model.fc1.parameters(), *model.fc2.parameters()):
                parameter.requires_grad_(False)  # as FreezeEncoderAfterFirstTask left it


class _StackedDERPP(_Stacked):
    """SharedHeadMLP of every seed trained with FaithfulDERPP: each seed's ring buffer of the last samples
    and logits, and its replay draws from its own copy of the global generator (the sequential run's
    `torch.randperm(count)`: nothing else draws from that generator while the method trains)."""

    def __init__(self, models: Sequence[baselines.SharedHeadMLP]):
        super().__init__()
        self.models = list(models)
        self.fc1 = SeedBatchedLinear([model.fc1 for model in models])
        self.fc2 = SeedBatchedLinear([model.fc2 for model in models])
        self.classifier = SeedBatchedLinear([model.classifier for model in models])
        self.strategy = baselines.FaithfulDERPP()  # its settings; the state is kept here, per seed
        self.generators: list[torch.Generator] = []  # capture_generators
        self.count = self.position = 0
        self.x = self.y = self.logits = None
        self.pending = None

    def capture_generators(self, states: Sequence[torch.Tensor]) -> None:
        self.generators = []
        for state in states:
            generator = torch.Generator()
            generator.set_state(state)
            self.generators.append(generator)

    def forward(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        return self.classifier(torch.relu(self.fc2(torch.relu(self.fc1(x)))))

    def loss(self, x: torch.Tensor, y: torch.Tensor, task_id: int) -> torch.Tensor:
        """FaithfulDERPP.loss per seed, on the seeds' logits of one batched forward (and one batched
        forward of the replayed rows); each seed's loss is formed as the sequential one is, then summed."""
        strategy = self.strategy
        logits = self(x)
        replay = None
        if self.count:
            take = min(strategy.replay_batch, self.count)
            chosen = torch.stack([torch.randperm(self.count, generator=generator)[:take]
                                  for generator in self.generators]).to(x.device)
            rows = torch.arange(len(self.models), device=x.device).unsqueeze(1)
            replay = self(self.x[rows, chosen]), self.y[rows, chosen], self.logits[rows, chosen]
        losses = []
        for seed_index in range(len(self.models)):
            loss = F.cross_entropy(logits[seed_index], y[seed_index])
            if replay is not None:
                replay_logits, replay_y, stored = (tensor[seed_index] for tensor in replay)
                loss = (loss + strategy.beta * F.cross_entropy(replay_logits, replay_y)
                        + strategy.alpha * F.mse_loss(replay_logits, stored))
            losses.append(loss)
        self.pending = (x, y, logits.detach())
        return torch.stack(losses).sum()

    def after_step(self) -> None:
        """FaithfulDERPP.after_step: the batch enters every seed's ring at the same slots."""
        x, y, logits = self.pending
        size = self.strategy.buffer_size
        if self.x is None:
            self.x = x.new_zeros((x.shape[0], size, *x.shape[2:]))
            self.y = y.new_zeros((y.shape[0], size))
            self.logits = logits.new_zeros((logits.shape[0], size, logits.shape[2]))
        slots = (self.position + torch.arange(x.shape[1], device=x.device)) % size
        self.x[:, slots], self.y[:, slots], self.logits[:, slots] = x, y, logits
        self.position = (self.position + x.shape[1]) % size
        self.count = min(self.count + x.shape[1], size)

    def make_optimizer(self, task_id: int, lr: float) -> torch.optim.Optimizer:
        """`_adam_over_all`, built once for the whole stream."""
        return torch.optim.Adam(self.parameters(), lr=lr)

    def copy_back(self) -> None:
        for seed_index, model in enumerate(self.models):
            for name in ("fc1", "fc2", "classifier"):
                getattr(self, name).copy_seed_into(seed_index, getattr(model, name))


def _train_batched(method_name: str, seed_tasks: Sequence[Sequence], seeds: Sequence[int], input_dim: int, *,
                   epochs: int, lr: float, batch_size: int, device: str) -> list[MethodResult]:
    """Method `method_name` of `compare_methods` for every seed at once; each seed's MethodResult."""
    started = time.perf_counter()
    torch_device = torch.device(device)
    methods, streams, cpu_states = [], [], []
    for seed, tasks in zip(seeds, seed_tasks):
        seed_everything(seed)  # as compare_methods re-seeds before each method
        method = protocols._faithful_method(method_name, list(tasks), input_dim, epochs=epochs, lr=lr, device=device)
        methods.append(method)
        streams.append(DropoutStream(torch_device))  # where the method's nn.Dropout starts drawing
        cpu_states.append(torch.get_rng_state())  # where its host draws (DER++'s replay) start
    models = [method.model.to(torch_device) for method in methods]  # run_stream's model.to(device)
    task_ids = [task.task_id for task in seed_tasks[0]]
    stack = {"dtgma": _StackedDTGMA, "lora": _StackedAdapterMLP, "adapter": _StackedAdapterMLP,
             "derpp": _StackedDERPP}[method_name]
    net = stack(models).to(torch_device)
    if isinstance(net, _StackedDERPP):
        net.capture_generators(cpu_states)
    optimizer = None if methods[0].optimizer_per_task else net.make_optimizer(task_ids[0], lr)
    if methods[0].batch_size is not None:
        batch_size = methods[0].batch_size
    generators = [torch_generator(seed) for seed in seeds]  # run_stream's batch-order generator
    test_sets = [(torch.stack([tasks[index].x_test for tasks in seed_tasks]),
                  torch.stack([tasks[index].y_test for tasks in seed_tasks])) for index in range(len(seed_tasks[0]))]
    matrices: list[list[list[float]]] = [[] for _ in seeds]
    net.train()
    for index, task_id in enumerate(task_ids):
        if methods[0].optimizer_per_task:
            optimizer = net.make_optimizer(task_id, lr)
        x_train = torch.stack([tasks[index].x_train for tasks in seed_tasks])
        y_train = torch.stack([tasks[index].y_train for tasks in seed_tasks])
        for x, y in seed_batched_steps(x_train, y_train, generators, streams, net.dropouts(task_id), epochs=epochs,
                                       batch_size=batch_size):
            loss = net.loss(x, y, task_id)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            net.after_step()
        net.after_task(task_id)
        for matrix, row in zip(matrices, _accuracy_rows(net, test_sets, task_ids)):
            matrix.append(row)
    net.copy_back()
    seconds = (time.perf_counter() - started) / len(seeds)
    return [MethodResult(matrix, seconds, method) for matrix, method in zip(matrices, methods)]


def baseline_table_seeds(*, seeds: Sequence[int], device: str, data_dir: pathlib.Path, **params) -> list[dict]:
    """`baseline_table(context=RunContext(s, device, data_dir), **params)` for every s in `seeds`, the DTG-MA
    method trained for all at once."""
    arguments = inspect.signature(protocols.baseline_table).bind(context=RunContext(seeds[0], device, data_dir),
                                                                 **params)
    arguments.apply_defaults()
    options = arguments.arguments
    benchmark, methods = options["benchmark"], tuple(options["methods"])
    epochs, lr, batch_size = options["epochs"], options["lr"], options["batch_size"]
    streams = [protocols._benchmark(benchmark, data_dir, device, seed, options["stream_options"] or {})
               for seed in seeds]
    seed_tasks = [tasks for tasks, _, _ in streams]
    input_dim = streams[0][2]
    batched = {method: _train_batched(method, seed_tasks, seeds, input_dim, epochs=epochs, lr=lr,
                                      batch_size=batch_size, device=device)
               for method in methods if method in BATCHED_METHODS}
    outputs = []
    for seed_index, (seed, (tasks, files, _)) in enumerate(zip(seeds, streams)):
        others = compare_methods(
            {method: lambda method=method: protocols._faithful_method(method, tasks, input_dim, epochs=epochs, lr=lr,
                                                                      device=device)
             for method in methods if method not in batched},
            tasks, epochs=epochs, batch_size=batch_size, seed=seed, device=device)
        results = {method: batched[method][seed_index] if method in batched else others[method] for method in methods}
        outputs.append(protocols.table_outputs(results, tasks, files, methods))
    return outputs


FORMS = {"implementations.dtgma.protocols:baseline_table": baseline_table_seeds}
