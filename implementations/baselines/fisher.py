"""Mean squared per-sample gradients (the diagonal empirical Fisher), exact and without per-sample passes.

A Linear layer y = x W^T + b gives sample n the gradients delta_n x_n^T (W) and delta_n (b), where
delta_n is the gradient of sample n's loss at the layer's output. Summed over the samples, their
squares are (delta^2)^T (x^2) and sum_n delta_n^2, so one ordinary backward pass of the summed (not
averaged) loss yields them for a whole batch. A Conv2d layer's per-sample gradient is the matrix
product delta_n unfold(x_n)^T over the layer's output positions, one batched product per batch.
This relies on every sample's output depending on that sample alone, which holds in eval mode
(BatchNorm uses running statistics, Dropout is off) for every model the baselines use.

Every other differentiated parameter (normalisation, embeddings, masks, attention, a tensor also read
outside its layer, a layer called twice or on inputs with extra dimensions) gets its per-sample
gradients from torch.func, vmap of grad on single samples, the definition the closed forms reproduce.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from implementations.common.models import TaskConditioned

SampleLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(logits [N, C], labels [N]) -> per-sample losses [N]; only the squares of its gradients matter."""

# Per-sample Conv2d gradients are materialised, [samples, out, in * kernel]; this caps one block of them.
CONV_BLOCK_ELEMENTS = 1 << 24


def mean_squared_sample_gradients(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                                  parameter_names: Collection[str], sample_loss: SampleLoss,
                                  task_id: int | None) -> dict[str, torch.Tensor]:
    """Mean over all samples of `batches` of the squared gradient of each sample's loss, per named parameter.

    Computed in eval mode (restored afterwards); TaskConditioned models get `task_id`. The model's
    own parameters and their .grad are left untouched.
    """
    parameters = dict(model.named_parameters())
    leaves = {name: parameters[name].detach().requires_grad_() for name in parameter_names}
    constants = {name: p.detach() for name, p in parameters.items() if name not in leaves}
    constants.update(dict(model.named_buffers()))
    extra = (task_id,) if isinstance(model, TaskConditioned) else ()
    sums = {name: torch.zeros_like(leaf) for name, leaf in leaves.items()}
    layers = _layers_owning(model, leaves)
    n_samples = 0
    was_training = model.training
    model.eval()
    try:
        for x, y in batches:
            unmatched = (_add_closed_form_sums(model, layers, leaves, constants, x, y, extra, sample_loss, sums)
                         if layers else set(leaves))
            if unmatched:
                covered = {name: leaf.detach() for name, leaf in leaves.items() if name not in unmatched}
                _add_vmap_sums(model, {name: leaves[name] for name in unmatched}, {**constants, **covered},
                               x, y, extra, sample_loss, sums)
            n_samples += len(x)
    finally:
        model.train(was_training)
    return {name: value / n_samples for name, value in sums.items()}


def _layers_owning(model: nn.Module, leaves: dict[str, torch.Tensor]) -> dict[nn.Module, dict[str, str]]:
    """Linear and Conv2d layers holding differentiated parameters: layer -> {"weight"/"bias": full name}."""
    layers: dict[nn.Module, dict[str, str]] = {}
    for prefix, module in model.named_modules():
        if type(module) not in (nn.Linear, nn.Conv2d):  # a subclass may compute something else
            continue
        for attribute in ("weight", "bias"):
            name = f"{prefix}.{attribute}" if prefix else attribute
            if name in leaves:
                layers.setdefault(module, {})[attribute] = name
    return layers


def _add_closed_form_sums(model: nn.Module, layers: dict[nn.Module, dict[str, str]],
                          leaves: dict[str, torch.Tensor], constants: dict[str, torch.Tensor],
                          x: torch.Tensor, y: torch.Tensor, extra: tuple, sample_loss: SampleLoss,
                          sums: dict[str, torch.Tensor]) -> set[str]:
    """Add this batch's closed-form sums to `sums`; return the parameter names they do not cover."""
    calls: dict[nn.Module, list[tuple[tuple, torch.Tensor, list[int | None]]]] = {layer: [] for layer in layers}

    def record(layer: nn.Module, args: tuple, output: torch.Tensor) -> None:
        calls[layer].append((args, output, _versions(*args, output)))

    # A forward hook registered before ours could replace the layer's output; such a layer is left to vmap.
    hooked = [layer for layer in layers if not layer._forward_hooks]
    handles = [layer.register_forward_hook(record) for layer in hooked]
    try:
        with torch.enable_grad():  # as torch.func.grad does, so a caller's no_grad cannot zero the Fisher
            total = sample_loss(functional_call(model, {**constants, **leaves}, (x, *extra)), y).sum()
    finally:
        for handle in handles:
            handle.remove()
    uses = _graph_uses(total)
    unmatched = {name for name, leaf in leaves.items() if uses[id(leaf)]}
    eligible = []
    for layer in hooked:
        names = layers[layer]
        if len(calls[layer]) != 1 or any(uses[id(leaves[name])] != 1 for name in names.values()):
            continue
        (args, output, versions), = calls[layer]
        # An in-place operation after the layer (ReLU(inplace=True)) would change what was recorded.
        unchanged = versions == _versions(*args, output)
        if unchanged and len(args) == 1 and _closed_form_applies(layer, args[0]) and output.requires_grad:
            eligible.append((layer, args[0].detach(), output))
    if not eligible:
        return unmatched
    with torch.enable_grad():
        deltas = torch.autograd.grad(total, [output for _, _, output in eligible], allow_unused=True)
    for (layer, layer_input, _), delta in zip(eligible, deltas):
        if delta is None:  # the layer's output missed the loss, so its parameter's one use is elsewhere
            continue
        names = layers[layer]
        squares = (_linear_squared_sums(layer_input, delta, names) if isinstance(layer, nn.Linear)
                   else _conv_squared_sums(layer, layer_input, delta, names))
        for attribute, value in squares.items():
            sums[names[attribute]] += value
        unmatched -= set(names.values())
    return unmatched


def _versions(*values: object) -> list[int | None]:
    return [value._version if isinstance(value, torch.Tensor) else None for value in values]


def _graph_uses(total: torch.Tensor) -> Counter[int]:
    """How many operations of the backward graph read each leaf tensor, keyed by id(leaf).

    A layer called once whose parameters each have exactly one use is the only place they act, so
    the layer's own input and output gradient determine their per-sample gradients.
    """
    uses: Counter[int] = Counter()
    if total.grad_fn is None:
        return uses
    seen = {total.grad_fn}
    pending = [total.grad_fn]
    while pending:
        for following, _ in pending.pop().next_functions:
            if following is None:
                continue
            if hasattr(following, "variable"):  # AccumulateGrad: the edge ends at a leaf
                uses[id(following.variable)] += 1
            elif following not in seen:
                seen.add(following)
                pending.append(following)
    return uses


def _closed_form_applies(layer: nn.Module, layer_input: torch.Tensor) -> bool:
    if isinstance(layer, nn.Linear):
        return layer_input.dim() == 2
    return (layer_input.dim() == 4 and layer.groups == 1 and layer.padding_mode == "zeros"
            and not isinstance(layer.padding, str))


def _linear_squared_sums(layer_input: torch.Tensor, delta: torch.Tensor,
                         names: dict[str, str]) -> dict[str, torch.Tensor]:
    squared_delta = delta ** 2
    squares = {}
    if "weight" in names:
        squares["weight"] = squared_delta.T @ layer_input ** 2
    if "bias" in names:
        squares["bias"] = squared_delta.sum(0)
    return squares


def _conv_squared_sums(layer: nn.Conv2d, layer_input: torch.Tensor, delta: torch.Tensor,
                       names: dict[str, str]) -> dict[str, torch.Tensor]:
    delta = delta.flatten(2)  # [N, out, positions]
    squares = {}
    if "weight" in names:
        patches = F.unfold(layer_input, layer.kernel_size, layer.dilation, layer.padding, layer.stride)
        block = max(1, CONV_BLOCK_ELEMENTS // layer.weight.numel())
        total = torch.zeros(layer.out_channels, patches.shape[1], dtype=delta.dtype, device=delta.device)
        for start in range(0, len(delta), block):
            per_sample = torch.bmm(delta[start:start + block], patches[start:start + block].transpose(1, 2))
            total += (per_sample ** 2).sum(0)
        squares["weight"] = total.view_as(layer.weight)
    if "bias" in names:
        squares["bias"] = (delta.sum(2) ** 2).sum(0)
    return squares


def _add_vmap_sums(model: nn.Module, differentiated: dict[str, torch.Tensor], constants: dict[str, torch.Tensor],
                   x: torch.Tensor, y: torch.Tensor, extra: tuple, sample_loss: SampleLoss,
                   sums: dict[str, torch.Tensor]) -> None:
    def one_sample_loss(parameters: dict[str, torch.Tensor], sample_x: torch.Tensor,
                        sample_y: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, {**constants, **parameters}, (sample_x.unsqueeze(0), *extra))
        return sample_loss(logits, sample_y.unsqueeze(0))[0]

    detached = {name: leaf.detach() for name, leaf in differentiated.items()}
    gradients = vmap(grad(one_sample_loss), in_dims=(None, 0, 0))(detached, x, y)
    for name, gradient in gradients.items():
        sums[name] += (gradient ** 2).sum(0)
