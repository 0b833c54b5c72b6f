"""Family A: evolutionary search with causal/coalition locking (spec §1.1-1.3).

Faithful to the original's quirks, because the README quick-start number (1.0904x) depends on them:

* every random draw comes from NumPy's legacy global RNG (`np.random.*`), and constructing a task
  with a seed re-seeds that global stream, so creating a task changes the optimizer's draws;
* the locker's ablation evaluations are not counted in the evaluation budget;
* its statistics are never reset, `reset()` keeps `best_x` and the lock mask;
* `best_x` is only updated at the top of a generation, so the last generation is never considered;
* with fewer than 5 unlocked coordinates every coordinate becomes mutable again (lock broken).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

N_OUTPUTS = 32  # width of the fixed random tanh layer of a task (§1.1)
W_SIGMA = 0.1
TARGET_SIGMA = 0.3

POPULATION = 30
N_ELITES = 6
INIT_SIGMA = 0.3
MUTATION_SIGMA = 0.1
MUTATED_COORDS = 5  # coordinates mutated per child; also the capacity-fallback bound (§1.3 step 4)

LOCK_SCORE_THRESHOLD = 5e-5  # mean ablation score above which a coordinate locks
COALITION_WINDOW = 1e-4  # candidates for group ablation: 0 < mean score < this
COALITION_MIN_CANDIDATES = 3
COALITION_TRIALS = 30
COALITION_THRESHOLD = 3e-4  # group ablation loss rise that earns each member a credit
COALITION_CREDITS = 2
ELITE_VARIANCE_THRESHOLD = 0.15


class MaskedRegionTask:
    """L(x) = mean_k (tanh(x W)_k - target_k)^2 with W non-zero only on the rows of `active_mask`.

    A seed re-seeds NumPy's global legacy RNG (the original's side effect, §1.1). W rows are drawn
    first as one (n_active x 32) `randn` call, then the target; both are stored as float32.
    """

    def __init__(self, input_dim: int, active_mask: np.ndarray, seed: int | None = None):
        if seed is not None:
            np.random.seed(seed)
        active_mask = np.asarray(active_mask, dtype=bool)
        self.input_dim = input_dim
        self.active_indices = np.flatnonzero(active_mask)
        self.W = np.zeros((input_dim, N_OUTPUTS), dtype=np.float32)
        self.W[active_mask] = np.random.randn(self.active_indices.size, N_OUTPUTS) * W_SIGMA
        self.target = (np.random.randn(N_OUTPUTS) * TARGET_SIGMA).astype(np.float32)

    def loss(self, x: np.ndarray) -> float:
        return float(np.mean((np.tanh(x @ self.W) - self.target) ** 2))


class SparseRegionTask(MaskedRegionTask):
    """The task of §1.1 whose loss depends only on x[int(D*a):int(D*b)]."""

    def __init__(self, input_dim: int, active_region: tuple[float, float], seed: int | None = None):
        start, end = int(input_dim * active_region[0]), int(input_dim * active_region[1])
        active_mask = np.zeros(input_dim, dtype=bool)
        active_mask[start:end] = True
        self.active_region = (start, end)
        super().__init__(input_dim, active_mask, seed)


def non_overlap_tasks(input_dim: int, n_tasks: int, seed: int) -> list[SparseRegionTask]:
    """Region i = (i/T, (i+1)/T); task seeds seed + i."""
    return [
        SparseRegionTask(input_dim, (i / n_tasks, (i + 1) / n_tasks), seed=seed + i)
        for i in range(n_tasks)
    ]


def partial_overlap_tasks(input_dim: int, n_tasks: int, seed: int) -> list[SparseRegionTask]:
    """Windows of width 1/T shifted by 1/(2T), so neighbours share half a window; clamped at 1.0."""
    width, shift = 1.0 / n_tasks, 1.0 / (2 * n_tasks)
    return [
        SparseRegionTask(input_dim, (i * shift, min(1.0, i * shift + width)), seed=seed + i)
        for i in range(n_tasks)
    ]


def random_mask_tasks(input_dim: int, n_tasks: int, seed: int, active_probability: float = 0.2) -> list[MaskedRegionTask]:
    """Each coordinate active with probability 0.2 (masks from `default_rng(seed)`), at least one."""
    mask_rng = np.random.default_rng(seed)
    tasks = []
    for i in range(n_tasks):
        mask = mask_rng.random(input_dim) < active_probability
        if not mask.any():
            mask[mask_rng.integers(input_dim)] = True
        tasks.append(MaskedRegionTask(input_dim, mask, seed=seed + i))
    return tasks


def contradictory_tasks(input_dim: int, seed: int) -> list[SparseRegionTask]:
    """Two tasks on region (0.2, 0.8), seeds s and s+1, the second target negated (its W also differs)."""
    first = SparseRegionTask(input_dim, (0.2, 0.8), seed=seed)
    second = SparseRegionTask(input_dim, (0.2, 0.8), seed=seed + 1)
    second.target = -second.target
    return [first, second]


class Loss(Protocol):
    def loss(self, x: np.ndarray) -> float: ...


def _evaluate(task: Loss, population: np.ndarray) -> np.ndarray:
    return np.array([task.loss(member) for member in population])


class SGMBaseline:
    """(30, 6) elitist search mutating all D coordinates; reset() restarts from a new population (§1.2)."""

    init_sigma = INIT_SIGMA
    mutation_sigma = MUTATION_SIGMA

    def __init__(self, dim: int):
        self.dim = dim
        self.pop: np.ndarray | None = None
        self.best_x: np.ndarray | None = None
        self.best_loss = np.inf

    def reset(self) -> None:
        self.pop = None
        self.best_loss = np.inf

    def step(self, task: Loss, n_evals: int) -> float:
        if self.pop is None:
            self.pop = np.random.randn(POPULATION, self.dim) * self.init_sigma
            self.best_x = self.pop[0].copy()
        losses = _evaluate(task, self.pop)
        evals = POPULATION
        while evals < n_evals:
            order = np.argsort(losses)[:N_ELITES]
            elites = self.pop[order]
            if losses[order[0]] < self.best_loss:
                self.best_loss = float(losses[order[0]])
                self.best_x = elites[0].copy()
            children = [elite.copy() for elite in elites]
            while len(children) < POPULATION and evals < n_evals:
                parent = elites[np.random.randint(N_ELITES)]
                children.append(parent + np.random.randn(self.dim) * self.mutation_sigma)
                evals += 1
            self.pop = np.array(children)
            losses = _evaluate(task, self.pop)
        return self.best_loss


class SGMWithLocking:
    """(30, 6) search with 5-coordinate mutations and the causal/coalition lock rule (§1.3)."""

    init_sigma = INIT_SIGMA
    mutation_sigma = MUTATION_SIGMA
    elite_variance_threshold = ELITE_VARIANCE_THRESHOLD

    def __init__(self, dim: int):
        self.dim = dim
        self.lock = np.zeros(dim, dtype=bool)
        self.causal_sum = np.zeros(dim, dtype=np.float32)
        # Starts at one, so the running "mean" is sum / (1 + number of measurements) (§1.3).
        self.causal_count = np.ones(dim, dtype=np.float32)
        self.group_credits = np.zeros(dim, dtype=np.int32)
        self.pop: np.ndarray | None = None
        self.best_x: np.ndarray | None = None
        self.best_loss = np.inf
        # Loss calls made by the lock rule, which the original leaves out of the budget (§1.3).
        self.uncounted_evals = 0

    def reset(self) -> None:
        """New task: fresh population next step; best_x, the lock and all statistics are kept."""
        self.pop = None
        self.best_loss = np.inf

    def init_pop(self) -> None:
        # Unlocked coordinates are re-drawn, including trained-but-unlocked ones of earlier tasks.
        self.pop = np.random.randn(POPULATION, self.dim) * self.init_sigma
        if self.best_x is not None:
            self.pop[:, self.lock] = self.best_x[self.lock]

    def measure_causality(self, elites: np.ndarray, task: Loss) -> np.ndarray:
        """Single-coordinate ablation scores on the best elite, then coalition trials; returns mean scores."""
        x = elites[0]
        base = task.loss(x)
        unlocked = np.flatnonzero(~self.lock)
        for d in unlocked:
            ablated = x.copy()
            ablated[d] = 0.0
            self.causal_sum[d] += task.loss(ablated) - base
        self.causal_count[unlocked] += 1
        self.uncounted_evals += 1 + unlocked.size
        mean_score = self.causal_sum / self.causal_count
        candidates = unlocked[(mean_score[unlocked] > 0) & (mean_score[unlocked] < COALITION_WINDOW)]
        if candidates.size >= COALITION_MIN_CANDIDATES:
            group_size = min(MUTATED_COORDS, candidates.size)
            for _ in range(COALITION_TRIALS):
                group = np.random.choice(candidates, group_size, replace=False)
                ablated = x.copy()
                ablated[group] = 0.0
                if task.loss(ablated) - base > COALITION_THRESHOLD:
                    self.group_credits[group] += 1
            self.uncounted_evals += COALITION_TRIALS
        return mean_score

    def update_locks(self, elites: np.ndarray, task: Loss) -> None:
        mean_score = self.measure_causality(elites, task)
        # Children differ from parents in 5 coordinates by ~0.1, so this variance test almost
        # always passes: in practice the ablation score alone decides (§1.3).
        low_variance = np.var(elites, axis=0) < self.elite_variance_threshold
        causal = (mean_score > LOCK_SCORE_THRESHOLD) | (self.group_credits >= COALITION_CREDITS)
        self.lock |= low_variance & causal

    def step(self, task: Loss, n_evals: int) -> float:
        """Spend `n_evals` counted loss evaluations (the 30 initial ones included) on `task`."""
        if self.pop is None:
            self.init_pop()
        losses = _evaluate(task, self.pop)
        evals = POPULATION
        while evals < n_evals:
            order = np.argsort(losses)[:N_ELITES]
            elites = self.pop[order]
            if losses[order[0]] < self.best_loss:
                self.best_loss = float(losses[order[0]])
                self.best_x = elites[0].copy()
            self.update_locks(elites, task)
            mutable = np.flatnonzero(~self.lock)
            if mutable.size < MUTATED_COORDS:
                mutable = np.arange(self.dim)  # capacity fallback: the lock no longer holds
            n_mutated = min(MUTATED_COORDS, mutable.size)
            children = [elite.copy() for elite in elites]
            while len(children) < POPULATION and evals < n_evals:
                child = elites[np.random.randint(N_ELITES)].copy()
                # Coordinates first, then their noise: the order that reproduces the README run.
                coords = np.random.choice(mutable, n_mutated, replace=False)
                child[coords] += np.random.randn(n_mutated) * self.mutation_sigma
                children.append(child)
                evals += 1
            self.pop = np.array(children)
            losses = _evaluate(task, self.pop)
        return self.best_loss
