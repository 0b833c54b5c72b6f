"""What every seed-batched form (`implementations/<system>/seed_batched.py`) is built from: several seeds'
copies of one model held as stacked tensors, each seed's along a leading dimension, stepped together.

The pieces keep each seed's arithmetic what its sequential run does: a stacked linear layer whose products
are the ones nn.Linear forms (so on one CPU thread each seed's numbers are bitwise its sequential run's),
a loss whose gradient for a seed's parameters is that seed's own mean loss's gradient, and an evaluation
that passes each seed's rows through the network in the chunks a sequential evaluation uses. And, for a
form that does not batch every setting, the sequential runs themselves.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .run_context import RunContext, call_protocol


class SeedBatchedLinearFunction(torch.autograd.Function):
    """y[s] = x[s] W[s]^T + b[s]. The backward forms each gradient with the product `addmm`'s backward
    uses for nn.Linear (grad_W = grad^T x rather than (x^T grad)^T), so that each seed's gradients sum in
    the same order as in its sequential run."""

    @staticmethod
    def forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        x, weight, _ = inputs
        ctx.save_for_backward(x, weight)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad_x = torch.bmm(grad, weight) if ctx.needs_input_grad[0] else None
        return grad_x, torch.bmm(grad.transpose(1, 2), x), grad.sum(dim=1)


class SeedBatchedLinear(nn.Module):
    """The same nn.Linear of every seed: weight (S, out, in), bias (S, out), inputs (S, B, in)."""

    def __init__(self, linears: Sequence[nn.Linear]):
        super().__init__()
        self.weight = nn.Parameter(torch.stack([linear.weight.detach() for linear in linears]))
        self.bias = nn.Parameter(torch.stack([linear.bias.detach() for linear in linears]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return SeedBatchedLinearFunction.apply(x, self.weight, self.bias)

    def copy_seed_into(self, seed_index: int, linear: nn.Linear) -> None:
        with torch.no_grad():
            linear.weight.copy_(self.weight[seed_index])
            linear.bias.copy_(self.bias[seed_index])


class ReplayedDropout(nn.Module):
    """In training, multiplies by `noise`: the slice, set before each step, of what every seed's own
    nn.Dropout would have drawn for this batch (`DropoutStream`), (seeds, batch, *shape) with `shape` one
    sample's shape where the sequential dropout applies (its noise is reshaped to the input's shape)."""

    def __init__(self, p: float, shape: Sequence[int]):
        super().__init__()
        self.p = p
        self.shape = tuple(shape)
        self.noise: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.noise.reshape(x.shape) if self.training else x


class DropoutStream:
    """One seed's dropout generator: the global torch generator's state right after the seed's model was
    built (where the sequential run's nn.Dropout starts drawing), swapped in only while drawing.

    `F.dropout` itself draws the noise, on ones of the shape the sequential run's dropout sees, so the
    noise is what the sequential run multiplies by on CPU (bernoulli) and on CUDA (the fused philox
    kernel, whose offset advances with the shape) alike.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.state = self._global_state()

    def _global_state(self) -> torch.Tensor:
        return torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else torch.get_rng_state()

    def draw_epoch(self, batch_sizes: Sequence[int], dropouts: Sequence[ReplayedDropout],
                   into: Sequence[torch.Tensor]) -> None:
        """Fill into[l] (samples of the epoch, *dropout l's shape) with the epoch's draws in the sequential
        order: step by step, and within a step dropout by dropout (`dropouts` in forward order)."""
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            if self.device.type == "cuda":
                torch.cuda.set_rng_state(self.state, self.device)
            else:
                torch.set_rng_state(self.state)
            start = 0
            for batch_size in batch_sizes:
                for noise, dropout in zip(into, dropouts):
                    ones = torch.ones(batch_size, *dropout.shape, device=self.device)
                    noise[start:start + batch_size] = F.dropout(ones, dropout.p, training=True)
                start += batch_size
            self.state = self._global_state()


def seed_batched_steps(x_train: torch.Tensor, y_train: torch.Tensor, generators: Sequence[torch.Generator],
                       streams: Sequence[DropoutStream], dropouts: Sequence[ReplayedDropout], *, epochs: int,
                       batch_size: int):
    """Every seed's batches of `epochs` passes over one task: x_train (S, n, ...), y_train (S, n).

    Per epoch each seed's order is a `randperm` from its own generator (as `shuffled_batches` draws it) and
    each seed's dropout noise for the epoch is drawn from its stream; before each step the step's slice of
    the noise is set on `dropouts` (in forward order). Yields (x, y), (S, batch, ...) and (S, batch).
    """
    device = x_train.device
    seed_rows = torch.arange(x_train.shape[0], device=device).unsqueeze(1)
    n_samples = x_train.shape[1]
    batch_sizes = [min(batch_size, n_samples - start) for start in range(0, n_samples, batch_size)]
    for _ in range(epochs):
        orders = torch.stack([torch.randperm(n_samples, generator=generator, device=generator.device)
                              for generator in generators]).to(device)
        noise = [torch.empty(len(streams), n_samples, *dropout.shape, device=device) for dropout in dropouts]
        if dropouts:
            for seed_index, stream in enumerate(streams):
                stream.draw_epoch(batch_sizes, dropouts, [layer_noise[seed_index] for layer_noise in noise])
        for start in range(0, n_samples, batch_size):
            batch = orders[:, start:start + batch_size]
            for dropout, layer_noise in zip(dropouts, noise):
                dropout.noise = layer_noise[:, start:start + batch_size]
            yield x_train[seed_rows, batch], y_train[seed_rows, batch]


def summed_mean_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Each seed's mean cross-entropy over its batch (logits (S, B, classes), targets (S, B)), summed over
    the seeds: each seed's parameters get exactly the gradient of its own mean loss."""
    seeds = logits.shape[0]
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none").view(seeds, -1).mean(dim=1).sum()


@torch.no_grad()
def correct_counts(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                   chunk: int) -> torch.Tensor:
    """Per seed, how many of its rows the arg-max of `forward` gets right: x (S, n, ...), y (S, n) (an
    expanded view serves where the seeds share their rows), `chunk` rows of every seed per forward pass,
    as the sequential evaluation batches them. An int64 tensor (S,) on y's device."""
    correct = torch.zeros(x.shape[0], dtype=torch.int64, device=y.device)
    for start in range(0, x.shape[1], chunk):
        correct += (forward(x[:, start:start + chunk]).argmax(dim=2) == y[:, start:start + chunk]).sum(dim=1)
    return correct


def each_seed_sequentially(protocol: Callable[..., dict], seeds: Sequence[int], *, device: str,
                           data_dir: pathlib.Path, **params) -> list[dict]:
    """Each seed's run of `protocol` (taking `context` or `seed, device, data_dir`), after its context's
    `reseed()`, as the engine makes the runs without batching: a form's fallback for what it does not batch
    (and the reference its batched runs are checked against)."""
    outputs = []
    for seed in seeds:
        context = RunContext(seed, device, data_dir)
        context.reseed()
        outputs.append(call_protocol(protocol, context, **params))
    return outputs
