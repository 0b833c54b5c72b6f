"""One rule for every parameter count a protocol reports, and the one function that applies it.

The rule
--------
1. ``parameter_count`` (the number a source's table is checked against) is the number of
   parameters the method's model holds at the point where the source script counts it, counted
   the way that script counts them: the sum of ``numel`` over the model's parameters, trainable or
   frozen alike. ``counted_at`` names that point:

   - ``"construction"``: the model as its constructor built it, before any task is registered.
     It holds the shared parameters and whatever per-task parameters the constructor pre-allocates,
     but none of the parameters created when a task is registered.
   - ``"after_training"``: the model after training on every task, with all of its per-task
     parameters.

   A model names the parameters that the source creates only when a task is registered through a
   method ``task_registered_parameters()``. A model without that method has none. The construction
   count is every parameter minus those, so it can be taken on the trained model itself and needs
   no second, fresh model.

2. ``parameter_count_trained`` is reported beside it for every method. It is the number of
   parameters of the model after the whole stream, with every task registered and every
   task-specific parameter counted: per-task modules and heads, adapters, and gate embeddings.

Neither count includes values that are not ``nn.Parameter`` s. These are left out:

- buffers, such as BatchNorm running statistics and DTG-MA's stored mask table of
  n_layers x n_tasks_max x n_heads floats;
- state that a training strategy keeps outside the model, such as a replay buffer with its
  logits, EWC's Fishers and anchor, and HAT's or PackNet's binary masks.

Use :func:`parameter_count_outputs` for every method. Do not sum ``numel`` by hand in a protocol.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

COUNTED_AT = ("construction", "after_training")


def _unique(parameters: Iterable[nn.Parameter]) -> dict[int, nn.Parameter]:
    return {id(p): p for p in parameters}


def task_registered_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters `model` says the source creates when a task is registered (none if it says nothing)."""
    declared = getattr(model, "task_registered_parameters", None)
    return list(declared()) if callable(declared) else []


def trained_parameter_count(model: nn.Module) -> int:
    """Rule item 2. Every parameter of `model`, each tensor counted once.

    Call it on the model after the whole stream, when all tasks are registered.
    """
    return sum(p.numel() for p in _unique(model.parameters()).values())


def reported_parameter_count(model: nn.Module, counted_at: str) -> int:
    """Rule item 1. The parameters `model` holds at `counted_at`, the point where the source counts.

    `model` must have every task registered.
    """
    if counted_at not in COUNTED_AT:
        raise ValueError(f"counted_at must be one of {COUNTED_AT}, got {counted_at!r}")
    everything = _unique(model.parameters())
    if counted_at == "after_training":
        return sum(p.numel() for p in everything.values())
    registered = _unique(task_registered_parameters(model))
    unknown = registered.keys() - everything.keys()
    if unknown:
        raise ValueError(f"{type(model).__name__}.task_registered_parameters() names {len(unknown)} tensor(s) "
                         "that are not parameters of the model")
    return sum(p.numel() for key, p in everything.items() if key not in registered)


def parameter_count_outputs(model: nn.Module, counted_at: str, prefix: str = "") -> dict[str, int]:
    """``{prefix}parameter_count`` (rule item 1) and ``{prefix}parameter_count_trained`` (item 2) of `model`.

    Pass the trained model, or the model with every task registered.
    """
    return {f"{prefix}parameter_count": reported_parameter_count(model, counted_at),
            f"{prefix}parameter_count_trained": trained_parameter_count(model)}
