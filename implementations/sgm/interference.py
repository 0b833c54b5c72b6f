"""Gradient interference under a lock mask, measured operationally (spec §2.1 #4, §3.1, §3.5 item 7).

The README's "Binary 0.000000" has no script; for a masked update g * (1 - m) the change on locked
coordinates is zero by definition. What can be measured is the effect of the new task's applied
update on the old task: Delta L_old per step and cosine(grad L_old, applied update). Both are zero
only when the old task depends on locked coordinates alone; a shared block that stays free (as in
the repository's hierarchical tests) lets the new task move the old loss.

Tasks are linear region losses L(x) = mean_k ((x[S] W - target)_k^2) on a coordinate set S, trained
by plain gradient descent with exact gradients, so every number is deterministic given the seed.
"""

from __future__ import annotations

import numpy as np


class SupportTask:
    """A linear loss on an arbitrary coordinate set `support` with an analytic gradient."""

    def __init__(self, dim: int, support: np.ndarray, n_outputs: int, rng: np.random.Generator,
                 w_sigma: float = 0.1, target_sigma: float = 0.5):
        self.dim = dim
        self.support = np.asarray(support)
        self.W = rng.normal(0.0, w_sigma, size=(self.support.size, n_outputs))
        self.target = rng.normal(0.0, target_sigma, size=n_outputs)

    def residual(self, x: np.ndarray) -> np.ndarray:
        return x[self.support] @ self.W - self.target

    def loss(self, x: np.ndarray) -> float:
        return float(np.mean(self.residual(x) ** 2))

    def gradient(self, x: np.ndarray) -> np.ndarray:
        gradient = np.zeros(self.dim)
        gradient[self.support] = 2.0 / self.target.size * (self.W @ self.residual(x))
        return gradient


def masked_update(gradient: np.ndarray, lock: np.ndarray, lr: float) -> np.ndarray:
    """The primitive: delta = -lr * g with locked entries zeroed."""
    return np.where(lock, 0.0, -lr * gradient)


def train(task: SupportTask, x: np.ndarray, lock: np.ndarray, n_steps: int, lr: float) -> np.ndarray:
    for _ in range(n_steps):
        x = x + masked_update(task.gradient(x), lock, lr)
    return x


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    norms = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / norms) if norms > 0 else 0.0


def measure_interference(old: SupportTask, new: SupportTask, x: np.ndarray, lock: np.ndarray, n_steps: int,
                         lr: float) -> dict:
    """Train `new` from x under `lock`, recording each step's effect on `old`."""
    x_start = x.copy()
    old_before, new_before = old.loss(x), new.loss(x)
    delta_old, cosines, inner = [], [], []
    for _ in range(n_steps):
        update = masked_update(new.gradient(x), lock, lr)
        old_gradient = old.gradient(x)
        loss_old = old.loss(x)
        x = x + update
        delta_old.append(old.loss(x) - loss_old)
        cosines.append(_cosine(old_gradient, update))
        inner.append(float(old_gradient @ update))
    return {
        "max_abs_change_locked": float(np.max(np.abs(x[lock] - x_start[lock]), initial=0.0)),
        "mean_delta_old_loss_per_step": float(np.mean(delta_old)),
        "max_abs_delta_old_loss_per_step": float(np.max(np.abs(delta_old))),
        "mean_cosine_old_gradient_update": float(np.mean(cosines)),
        "mean_abs_cosine_old_gradient_update": float(np.mean(np.abs(cosines))),
        "mean_inner_old_gradient_update": float(np.mean(inner)),
        "old_loss_before": old_before,
        "old_loss_after": old.loss(x),
        "old_retention": old.loss(x) / old_before,
        "new_loss_reduction": (new_before - new.loss(x)) / new_before,
    }


def scenario_supports(dim: int, block: int, shared: int) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(old support, new support, locked coordinates after the old task) for each scenario.

    * disjoint: old on [0, b), new on [b, 2b), lock old's block;
    * shared_free: both use a shared block [0, s) plus a private block; only old's private block is
      locked (the hierarchical stress tests' rule: the shared trunk stays free);
    * shared_locked: the same tasks, all of old's support locked (no interference, less plasticity);
    * shared_unlocked: the same tasks, nothing locked (plain fine-tuning).
    """
    if shared + 2 * block > dim or 2 * block > dim:
        raise ValueError(f"dim={dim} too small for block={block}, shared={shared}")
    disjoint_old, disjoint_new = np.arange(0, block), np.arange(block, 2 * block)
    shared_block = np.arange(0, shared)
    private_old, private_new = np.arange(shared, shared + block), np.arange(shared + block, shared + 2 * block)
    old, new = np.concatenate([shared_block, private_old]), np.concatenate([shared_block, private_new])
    return {
        "disjoint": (disjoint_old, disjoint_new, disjoint_old),
        "shared_free": (old, new, private_old),
        "shared_locked": (old, new, old),
        "shared_unlocked": (old, new, np.array([], dtype=int)),
    }
