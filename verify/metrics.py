"""Pinned continual-learning metrics.

``R[i][j]`` is accuracy on task j after training task i; ``b[j]`` the untrained model's accuracy on
task j. Every variant the sources use is computed here, and each ledger entry names the one its
source used. Metrics read a protocol's outputs dict (see docs/CONTRACTS.md) and return one float.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

Divisor = str  # "T-1" (mean over the tasks that can be forgotten) or "T" (sum divided by all tasks)


@dataclass(frozen=True)
class AccuracyMatrix:
    """T x T accuracy matrix R plus the optional untrained row b."""

    R: np.ndarray
    untrained: np.ndarray | None = None

    def __post_init__(self) -> None:
        R = np.asarray(self.R, dtype=np.float64)
        if R.ndim != 2 or R.shape[0] != R.shape[1] or R.shape[0] == 0:
            raise ValueError(f"accuracy matrix must be square and non-empty, got shape {R.shape}")
        object.__setattr__(self, "R", R)
        if self.untrained is not None:
            b = np.asarray(self.untrained, dtype=np.float64)
            if b.shape != (R.shape[0],):
                raise ValueError(f"untrained row must have {R.shape[0]} entries, got shape {b.shape}")
            object.__setattr__(self, "untrained", b)

    @property
    def T(self) -> int:
        return self.R.shape[0]

    def final_average_accuracy(self) -> float:
        return float(self.R[-1].mean())

    def sample_weighted_final_accuracy(self, task_sizes: Sequence[int]) -> float:
        weights = np.asarray(task_sizes, dtype=np.float64)
        if weights.shape != (self.T,):
            raise ValueError(f"need {self.T} task sizes, got {len(weights)}")
        return float((self.R[-1] * weights).sum() / weights.sum())

    def _average_over_old_tasks(self, per_task: np.ndarray, divisor: Divisor) -> float:
        if self.T == 1:
            return 0.0
        if divisor == "T-1":
            return float(per_task.sum() / (self.T - 1))
        if divisor == "T":
            return float(per_task.sum() / self.T)
        raise ValueError(f"divisor must be 'T-1' or 'T', got {divisor!r}")

    def forgetting_max_minus_last_per_task(self) -> np.ndarray:
        """For each task j < T-1: best accuracy on j from row j onwards, minus the final accuracy.

        The maximum runs over rows j..T-1, the last row included, so it is never negative.
        """
        return np.array([self.R[j:, j].max() - self.R[-1, j] for j in range(self.T - 1)])

    def forgetting_first_minus_last_per_task(self) -> np.ndarray:
        """For each task j < T-1: accuracy right after learning j minus final accuracy (may be negative)."""
        return np.array([self.R[j, j] - self.R[-1, j] for j in range(self.T - 1)])

    def forgetting_max_minus_last(self, divisor: Divisor = "T-1") -> float:
        return self._average_over_old_tasks(self.forgetting_max_minus_last_per_task(), divisor)

    def forgetting_first_minus_last(self, divisor: Divisor = "T-1", clip: bool = False) -> float:
        per_task = self.forgetting_first_minus_last_per_task()
        if clip:
            per_task = np.clip(per_task, 0.0, None)
        return self._average_over_old_tasks(per_task, divisor)

    def bwt(self) -> float:
        """Backward transfer (Lopez-Paz & Ranzato 2017): mean of R[T-1][j] - R[j][j] over j < T-1."""
        if self.T == 1:
            return 0.0
        return float(np.mean([self.R[-1, j] - self.R[j, j] for j in range(self.T - 1)]))

    def fwt(self) -> float:
        """Forward transfer: mean of R[j-1][j] - b[j] over j >= 1; needs the untrained row."""
        if self.untrained is None:
            raise ValueError("forward transfer needs the untrained accuracy row b")
        if self.T == 1:
            return 0.0
        return float(np.mean([self.R[j - 1, j] - self.untrained[j] for j in range(1, self.T)]))

    def plasticity(self) -> np.ndarray:
        """Accuracy on each task right after learning it (the diagonal)."""
        return np.diag(self.R).copy()


def retention_ratio(loss_before: float, loss_after: float) -> float:
    """Loss after later training divided by the loss right after training; 1.0 means unchanged."""
    if loss_before == 0:
        raise ValueError("retention ratio undefined for a zero loss before")
    return float(loss_after) / float(loss_before)


# ----------------------------------------------------------------------------------------------
# Registry: metric name (as written in ledgers) -> function(outputs, **metric_args) -> float.

MetricFunction = Callable[..., float]
REGISTRY: dict[str, MetricFunction] = {}


class MetricInputError(KeyError):
    """A run's outputs lack what a metric needs."""

    def __str__(self) -> str:
        return str(self.args[0])


def _register(name: str) -> Callable[[MetricFunction], MetricFunction]:
    def decorate(function: MetricFunction) -> MetricFunction:
        REGISTRY[name] = function
        return function

    return decorate


def _output(outputs: Mapping[str, Any], key: str) -> Any:
    if key not in outputs:
        raise MetricInputError(f"run outputs have no {key!r} (have: {', '.join(sorted(outputs))})")
    return outputs[key]


def _matrix(outputs: Mapping[str, Any], matrix: str, untrained: str | None = None) -> AccuracyMatrix:
    b = outputs.get(untrained) if untrained else None
    return AccuracyMatrix(np.asarray(_output(outputs, matrix)), None if b is None else np.asarray(b))


@_register("value")
def value(outputs: Mapping[str, Any], key: str, index: int | list[int] | None = None) -> float:
    """A scalar output, or one element of a (nested) list output."""
    item = _output(outputs, key)
    for i in [index] if isinstance(index, int) else (index or []):
        item = item[i]
    if isinstance(item, bool):
        return float(item)
    if not isinstance(item, (int, float)):
        raise MetricInputError(f"output {key!r}{'' if index is None else index} is not a number: {item!r}")
    return float(item)


def _numbers(outputs: Mapping[str, Any], key: str) -> np.ndarray:
    items = _output(outputs, key)
    if not isinstance(items, list) or not items or not all(isinstance(v, (int, float)) for v in items):
        raise MetricInputError(f"output {key!r} is not a non-empty list of numbers: {items!r}")
    return np.asarray(items, dtype=np.float64)


@_register("minimum")
def minimum(outputs: Mapping[str, Any], key: str) -> float:
    """Smallest element of a list output (e.g. the low end of a per-task range)."""
    return float(_numbers(outputs, key).min())


@_register("maximum")
def maximum(outputs: Mapping[str, Any], key: str) -> float:
    """Largest element of a list output (e.g. the high end of a per-task range)."""
    return float(_numbers(outputs, key).max())


# An operand of a composed metric (`difference`, `ratio`): an output key, read with `value`, or a
# metric specification {"metric": name, **args}, computed with `compute` (it may compose further).
Operand = str | Mapping[str, Any]
# composed metric name -> the names of its operand arguments
OPERANDS: dict[str, tuple[str, ...]] = {"difference": ("key", "minus"), "ratio": ("key", "over")}
# How deep specifications may nest (a difference of ratios of ... ); ledgers need two or three levels.
MAX_NESTING = 8


def _operand(outputs: Mapping[str, Any], operand: Any) -> float:
    """The number an operand stands for: `value(outputs, key)` for a key, else the metric it specifies."""
    if isinstance(operand, str):
        return value(outputs, operand)
    if isinstance(operand, Mapping) and isinstance(operand.get("metric"), str):
        args = {name: argument for name, argument in operand.items() if name != "metric"}
        return compute(operand["metric"], outputs, args)
    raise ValueError(f"an operand is an output key or a metric specification {{metric = ...}}, got {operand!r}")


def _operand_text(operand: Any) -> str:
    if isinstance(operand, str):
        return repr(operand)
    args = ", ".join(f"{name}={argument!r}" for name, argument in operand.items() if name != "metric")
    return f"{operand['metric']}({args})"


@_register("difference")
def difference(outputs: Mapping[str, Any], key: Operand, minus: Operand) -> float:
    """One number minus another; each is an output key (e.g. a score after quantisation minus before) or
    a metric specification, such as {metric = "final_average_accuracy", matrix = "sparse_accuracy_matrix"}."""
    return _operand(outputs, key) - _operand(outputs, minus)


@_register("ratio")
def ratio(outputs: Mapping[str, Any], key: Operand, over: Operand) -> float:
    """One number divided by another, operands as for `difference` (e.g. one method's step time over another's)."""
    numerator, denominator = _operand(outputs, key), _operand(outputs, over)
    if denominator == 0:
        raise MetricInputError(f"ratio undefined: the denominator {_operand_text(over)} is zero "
                               f"(numerator {_operand_text(key)} = {numerator!r})")
    return numerator / denominator


@_register("final_average_accuracy")
def final_average_accuracy(outputs: Mapping[str, Any], matrix: str = "accuracy_matrix") -> float:
    return _matrix(outputs, matrix).final_average_accuracy()


@_register("sample_weighted_final_accuracy")
def sample_weighted_final_accuracy(
    outputs: Mapping[str, Any], matrix: str = "accuracy_matrix", sizes: str = "task_test_sizes"
) -> float:
    return _matrix(outputs, matrix).sample_weighted_final_accuracy(_output(outputs, sizes))


@_register("final_average_accuracy_difference")
def final_average_accuracy_difference(outputs: Mapping[str, Any], matrix: str, minus: str) -> float:
    """Final average accuracy of one method minus another's, both matrices from the same paired run."""
    return _matrix(outputs, matrix).final_average_accuracy() - _matrix(outputs, minus).final_average_accuracy()


@_register("accuracy_cell")
def accuracy_cell(outputs: Mapping[str, Any], row: int, column: int, matrix: str = "accuracy_matrix") -> float:
    """One cell R[row][column]; negative indices count from the end."""
    return float(_matrix(outputs, matrix).R[row, column])


@_register("forgetting_max_minus_last")
def forgetting_max_minus_last(
    outputs: Mapping[str, Any], matrix: str = "accuracy_matrix", divisor: Divisor = "T-1"
) -> float:
    return _matrix(outputs, matrix).forgetting_max_minus_last(divisor)


@_register("forgetting_first_minus_last")
def forgetting_first_minus_last(
    outputs: Mapping[str, Any], matrix: str = "accuracy_matrix", divisor: Divisor = "T-1", clip: bool = False
) -> float:
    return _matrix(outputs, matrix).forgetting_first_minus_last(divisor, clip)


@_register("bwt")
def bwt(outputs: Mapping[str, Any], matrix: str = "accuracy_matrix") -> float:
    return _matrix(outputs, matrix).bwt()


@_register("fwt")
def fwt(outputs: Mapping[str, Any], matrix: str = "accuracy_matrix", untrained: str = "untrained_accuracy") -> float:
    return _matrix(outputs, matrix, untrained).fwt()


@_register("plasticity_mean")
def plasticity_mean(outputs: Mapping[str, Any], matrix: str = "accuracy_matrix") -> float:
    """Mean accuracy on each task right after learning it."""
    return float(_matrix(outputs, matrix).plasticity().mean())


@_register("retention_ratio")
def retention_ratio_metric(
    outputs: Mapping[str, Any], task: int = 0, before: str = "loss_before", after: str = "loss_after"
) -> float:
    """loss_after[task] / loss_before[task]."""
    return retention_ratio(_output(outputs, before)[task], _output(outputs, after)[task])


@_register("mean_retention_ratio")
def mean_retention_ratio(
    outputs: Mapping[str, Any], tasks: list[int] | None = None, before: str = "loss_before", after: str = "loss_after"
) -> float:
    """Mean of loss_after[t] / loss_before[t] over `tasks` (default: all but the last task)."""
    losses_before, losses_after = _output(outputs, before), _output(outputs, after)
    chosen = tasks if tasks is not None else range(len(losses_before) - 1)
    return float(np.mean([retention_ratio(losses_before[t], losses_after[t]) for t in chosen]))


@_register("parameter_count")
def parameter_count(outputs: Mapping[str, Any], key: str = "parameter_count") -> float:
    """Parameter count after all tasks are registered, as the protocol reports it."""
    count = _output(outputs, key)
    if not isinstance(count, int) or isinstance(count, bool):
        raise MetricInputError(f"output {key!r} must be an integer count, got {count!r}")
    return float(count)


def compute(name: str, outputs: Mapping[str, Any], args: Mapping[str, Any]) -> float:
    """Apply the named metric to one run's outputs."""
    if name not in REGISTRY:
        raise ValueError(f"unknown metric {name!r} (known: {', '.join(sorted(REGISTRY))})")
    return REGISTRY[name](outputs, **args)


def check_args(name: str, args: Mapping[str, Any], *, _where: str = "", _depth: int = 0) -> None:
    """Raise ValueError, with a one-line message, unless `args` fit metric `name`.

    The arguments must bind to the metric's signature (the outputs aside); the operands of a composed
    metric (`OPERANDS`) must each be an output key or a specification {metric = ..., **args} whose
    metric is known and whose arguments fit it in turn. A nested problem names its path, e.g.
    ``minus.over: unknown metric 'accuracy' (known: ...)``. What a run's outputs hold is not checked here.
    """
    prefix = f"{_where}: " if _where else ""
    if _depth > MAX_NESTING:
        raise ValueError(f"{prefix}metric specifications nest more than {MAX_NESTING} deep")
    if name not in REGISTRY:
        raise ValueError(f"{prefix}unknown metric {name!r} (known: {', '.join(sorted(REGISTRY))})")
    try:
        inspect.signature(REGISTRY[name]).bind(None, **args)  # None stands for the outputs
    except TypeError as error:
        raise ValueError(f"{prefix}do not fit metric {name!r}: {error}") from None
    for operand_name in OPERANDS.get(name, ()):
        operand = args[operand_name]
        where = f"{_where}.{operand_name}" if _where else operand_name
        if isinstance(operand, str):
            continue
        if not isinstance(operand, Mapping):
            raise ValueError(f"{where}: an operand of {name!r} is an output key (a string) or a metric "
                             f"specification {{metric = \"...\", ...}}, got {type(operand).__name__} {operand!r}")
        nested = operand.get("metric")
        if not isinstance(nested, str):
            raise ValueError(f"{where}: a metric specification names its metric as a string "
                             f"{{metric = \"...\", ...}}, got {operand!r}")
        check_args(nested, {key: argument for key, argument in operand.items() if key != "metric"},
                   _where=where, _depth=_depth + 1)
