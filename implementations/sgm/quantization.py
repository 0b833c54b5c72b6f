"""The model-based variant of family A and the 8-bit quantisation test (spec §1.4, §2.1 #11).

The searchers are `evolution`'s with the variant's constants (init sigma 0.1, mutation sigma 0.05,
elite-variance threshold 0.05). One faithful bug matters: `SGMWithLockingModel.reset()` also drops
the best parameters, so the next population never copies the locked values and every locked
coordinate is frozen at a fresh random value. "Locked retention" here therefore measures a weaker
search, not memory.
"""

from __future__ import annotations

import numpy as np

from implementations.sgm.evolution import SGMBaseline, SGMWithLocking


class _FlatModel:
    """A model whose parameters are one flat float64 vector, split in `shapes` order."""

    shapes: list[tuple[int, ...]]

    @property
    def n_params(self) -> int:
        return sum(int(np.prod(shape)) for shape in self.shapes)

    def unpack(self, params: np.ndarray) -> list[np.ndarray]:
        tensors, offset = [], 0
        for shape in self.shapes:
            size = int(np.prod(shape))
            tensors.append(params[offset:offset + size].reshape(shape))
            offset += size
        return tensors


class NNModel(_FlatModel):
    """tanh(x W1 + b1) -> tanh(. W2 + b2) -> . W3 + b3; flattened W1, b1, W2, b2, W3, b3."""

    def __init__(self, n_in: int = 64, hidden1: int = 32, hidden2: int = 16, n_out: int = 10):
        self.n_in, self.n_out = n_in, n_out
        self.shapes = [(n_in, hidden1), (hidden1,), (hidden1, hidden2), (hidden2,), (hidden2, n_out), (n_out,)]

    def forward(self, params: np.ndarray, x: np.ndarray) -> np.ndarray:
        W1, b1, W2, b2, W3, b3 = self.unpack(params)
        return np.tanh(np.tanh(x @ W1 + b1) @ W2 + b2) @ W3 + b3


class TransformerModel(_FlatModel):
    """q, k, v = tanh(x W_q), tanh(x W_k), tanh(x W_v); h = tanh((q*k*v) W_o); out = h W2.

    Elementwise product, no softmax and no biases: a "transformer" in name only (§1.4)."""

    def __init__(self, n_in: int = 64, hidden: int = 32, n_out: int = 10):
        self.n_in, self.n_out = n_in, n_out
        self.shapes = [(n_in, hidden), (n_in, hidden), (n_in, hidden), (hidden, hidden), (hidden, n_out)]

    def forward(self, params: np.ndarray, x: np.ndarray) -> np.ndarray:
        Wq, Wk, Wv, Wo, W2 = self.unpack(params)
        attention = np.tanh(x @ Wq) * np.tanh(x @ Wk) * np.tanh(x @ Wv)
        return np.tanh(attention @ Wo) @ W2


class ModelTask:
    """MSE of the model's outputs on masked Gaussian inputs to one fixed target vector."""

    def __init__(self, model: _FlatModel, input_mask: np.ndarray, target: np.ndarray, n_samples: int, seed: int):
        self.model = model
        self.input_mask = input_mask
        self.inputs = np.random.default_rng(seed).normal(size=(n_samples, model.n_in)) * input_mask
        self.target = target

    def loss(self, params: np.ndarray) -> float:
        return float(np.mean((self.model.forward(params, self.inputs) - self.target) ** 2))


def build_tasks_for_model(model: _FlatModel, n_tasks: int, seed: int, n_samples: int = 1) -> list[ModelTask]:
    """T contiguous input segments (the last takes the remainder); targets N(0,1) from
    `default_rng(seed)`, sample seeds seed + i."""
    target_rng = np.random.default_rng(seed)
    segment = model.n_in // n_tasks
    tasks = []
    for i in range(n_tasks):
        mask = np.zeros(model.n_in)
        mask[i * segment:(i + 1) * segment if i < n_tasks - 1 else model.n_in] = 1.0
        tasks.append(ModelTask(model, mask, target_rng.normal(size=model.n_out), n_samples, seed + i))
    return tasks


class SGMBaselineModel(SGMBaseline):
    init_sigma = 0.1
    mutation_sigma = 0.05


class SGMWithLockingModel(SGMWithLocking):
    init_sigma = 0.1
    mutation_sigma = 0.05
    elite_variance_threshold = 0.05

    def reset(self) -> None:
        """The variant's bug: best parameters are dropped too, so locked values are re-randomised."""
        super().reset()
        self.best_x = None


def quantize_8bit(params: np.ndarray) -> np.ndarray:
    """Symmetric uniform 8-bit quantisation with a max-abs range: step max|theta| / 127."""
    scale = np.max(np.abs(params)) / 127.0
    return np.round(params / scale) * scale


def train_sequence(searcher: SGMBaseline | SGMWithLocking, tasks: list[ModelTask], evals_per_task: int) -> dict:
    """reset() and step() per task; retention of every task but the last, float and 8-bit."""
    loss_after, first_lock, first_values = [], None, None
    for t, task in enumerate(tasks):
        searcher.reset()
        searcher.step(task, evals_per_task)
        loss_after.append(task.loss(searcher.best_x))
        if t == 0 and isinstance(searcher, SGMWithLocking):
            first_lock = searcher.lock.copy()
            first_values = searcher.best_x[first_lock].copy()
    final = searcher.best_x
    quantized = quantize_8bit(final)
    earlier = range(len(tasks) - 1)
    result = {
        "retention_float": float(np.mean([tasks[t].loss(final) / loss_after[t] for t in earlier])),
        "retention_8bit": float(np.mean([tasks[t].loss(quantized) / loss_after[t] for t in earlier])),
        "max_quantization_error": float(np.max(np.abs(quantized - final))),
        "max_abs_param": float(np.max(np.abs(final))),
    }
    if first_lock is not None:
        change = np.abs(final[first_lock] - first_values)
        result.update({
            "task0_locked_count": int(first_lock.sum()),
            "task0_locked_max_abs_change": float(np.max(change, initial=0.0)),
            "task0_locked_kept_count": int(np.sum(change == 0.0)),
        })
    return result
