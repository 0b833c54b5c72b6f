"""k-winners-take-all with boosting and duty cycles (spec §5.1 KWinners, §5.2 KWinners2d).

Semantics of nupic.torch as the spec describes them. Where the 2019 library (the one the published
runs used) differs from today's, the difference never changes the winners:

* boosting: today's score is x * exp(-beta * d); 2019 used exp(beta * (k/n - d)), which is today's
  factor times the positive constant exp(beta * k/n), so the ranking is the same (§5.1 step 1);
* ties: 2019 always took an exact top-k; that is `break_ties=True` here (today's default is False);
* 2019 had no `relu` option; leave it False for the 2019 behaviour.
"""

from __future__ import annotations

import torch
from torch import nn


def _check_boosting(percent_on: float, k_inference_factor: float, boost_strength: float,
                    boost_strength_factor: float) -> None:
    # The library's asserts (§5.1 "Asserts").
    if boost_strength < 0:
        raise ValueError(f"boost_strength must be >= 0, got {boost_strength}")
    if not 0 <= boost_strength_factor <= 1:
        raise ValueError(f"boost_strength_factor must lie in [0, 1], got {boost_strength_factor}")
    if not 0 < percent_on < 1:
        raise ValueError(f"percent_on must lie in (0, 1), got {percent_on}")
    if not 0 < percent_on * k_inference_factor < 1:
        raise ValueError(f"percent_on * k_inference_factor must lie in (0, 1), got {percent_on * k_inference_factor}")


def _check_at_least_one_winner(k: int, k_inference: int, n: int) -> None:
    # The library accepts a percent_on that rounds to no winner and then silences the layer; a
    # reduced-width configuration must fail loudly instead.
    if not 1 <= k <= n or not 1 <= k_inference <= n:
        raise ValueError(f"k = {k} and k_inference = {k_inference} must lie in [1, {n}]; raise percent_on")


def winners_mask(scores: torch.Tensor, k: int, break_ties: bool, relu: bool) -> torch.Tensor:
    """Boolean mask of the winners along dimension 1 of `scores` (§5.1 step 2).

    break_ties: exactly k winners per row (top-k); otherwise every unit whose score reaches the
    k-th largest score wins, so ties at the threshold can give more than k winners.
    relu: units whose score is not positive lose too, as if a ReLU came first.
    """
    if break_ties:
        mask = torch.zeros_like(scores, dtype=torch.bool)
        mask.scatter_(1, scores.topk(k, dim=1, sorted=False).indices, True)
        if relu:
            mask &= scores > 0
        return mask
    threshold = scores.topk(k, dim=1, sorted=True).values[:, k - 1:k]
    if relu:
        threshold = threshold.clamp(min=0)
    return scores >= threshold


class _DutyCycleBoosting(nn.Module):
    """State shared by both k-WTA layers: a per-unit duty cycle d and the boost strength beta."""

    def __init__(self, duty_shape: tuple[int, ...], percent_on: float, k_inference_factor: float,
                 boost_strength: float, boost_strength_factor: float, duty_cycle_period: int,
                 break_ties: bool, relu: bool):
        super().__init__()
        _check_boosting(percent_on, k_inference_factor, boost_strength, boost_strength_factor)
        self.percent_on = percent_on
        self.k_inference_factor = k_inference_factor
        self.boost_strength_factor = boost_strength_factor
        self.duty_cycle_period = duty_cycle_period
        self.break_ties = break_ties
        self.relu = relu
        self.register_buffer("duty_cycle", torch.zeros(duty_shape))
        self.register_buffer("boost_strength", torch.tensor(float(boost_strength)))
        # A plain counter, not in the state dict, as in the library (§5.1 "State").
        self.learning_iterations = 0
        # Whether to boost, decided once on the host: reading the buffer each step (.item()) would wait
        # for a GPU every step. beta only ever shrinks by multiplication, so a beta that starts at 0 stays
        # 0, and one that starts positive can reach 0 only by underflow, where exp(-0 * d) = 1 leaves the
        # scores bit-identical: the outputs are those of testing beta > 0 every step.
        self._boosting = boost_strength > 0

    def boosted(self, x: torch.Tensor) -> torch.Tensor:
        """Selection scores: computed from a detached x, so the choice of winners gets no gradient."""
        scores = x.detach()
        if self._boosting:
            scores = scores * torch.exp(-self.boost_strength * self.duty_cycle)
        return scores

    def update_duty_cycle(self, active_per_unit: torch.Tensor, batch_size: int) -> None:
        """d <- (d * (P - B) + active) / P with P = min(period, samples seen) (§5.1 step 4).

        The formula is the library's. When a batch is larger than the period, P - B < 0 and d can
        leave [0, 1]; tests/test_sparse_synapses_kwinners.py keeps that counterexample.
        """
        self.learning_iterations += batch_size
        period = min(self.duty_cycle_period, self.learning_iterations)
        self.duty_cycle.mul_(period - batch_size).add_(active_per_unit.reshape(self.duty_cycle.shape)).div_(period)

    def update_boost_strength(self) -> None:
        """beta <- beta * factor; the library leaves calling it (once per epoch) to the user (§5.1)."""
        self.boost_strength.mul_(self.boost_strength_factor)


class KWinners(_DutyCycleBoosting):
    """k-WTA over the n units of a (B, n) input: winners keep their un-boosted value, losers are 0."""

    def __init__(self, n: int, percent_on: float, k_inference_factor: float = 1.5, boost_strength: float = 1.0,
                 boost_strength_factor: float = 0.9, duty_cycle_period: int = 1000, break_ties: bool = False,
                 relu: bool = False):
        super().__init__((n,), percent_on, k_inference_factor, boost_strength, boost_strength_factor,
                         duty_cycle_period, break_ties, relu)
        self.n = n
        # int(round(.)) sends halves to even; k_inference truncates k * factor (§5.1).
        self.k = int(round(n * percent_on))
        self.k_inference = int(self.k * k_inference_factor)
        _check_at_least_one_winner(self.k, self.k_inference, n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.k if self.training else self.k_inference
        y = x * winners_mask(self.boosted(x), k, self.break_ties, self.relu)
        if self.training:
            self.update_duty_cycle((y > 0).sum(dim=0), len(x))
        return y

    def extra_repr(self) -> str:
        return f"n={self.n}, k={self.k}, k_inference={self.k_inference}, break_ties={self.break_ties}"


class KWinners2d(_DutyCycleBoosting):
    """k-WTA for (B, C, H, W) maps, with one duty cycle per channel (§5.2).

    local=True: at each position the top-k channels win, k = round(C * percent_on).
    local=False: the top-k of the whole C*H*W volume of each sample win, n taken at the first forward.
    """

    def __init__(self, channels: int, percent_on: float = 0.1, k_inference_factor: float = 1.5,
                 boost_strength: float = 1.0, boost_strength_factor: float = 0.9, duty_cycle_period: int = 1000,
                 local: bool = False, break_ties: bool = False, relu: bool = False):
        super().__init__((1, channels, 1, 1), percent_on, k_inference_factor, boost_strength,
                         boost_strength_factor, duty_cycle_period, break_ties, relu)
        self.channels = channels
        self.local = local
        # Both rounded here, unlike KWinners' truncated k_inference (§5.2).
        self.k = int(round(channels * percent_on)) if local else None
        self.k_inference = int(round(channels * percent_on * k_inference_factor)) if local else None
        if local:
            _check_at_least_one_winner(self.k, self.k_inference, channels)

    def _set_global_k(self, x: torch.Tensor) -> None:
        n = x[0].numel()
        self.k = int(round(n * self.percent_on))
        self.k_inference = int(round(n * self.percent_on * self.k_inference_factor))
        _check_at_least_one_winner(self.k, self.k_inference, n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.k is None:
            self._set_global_k(x)
        k = self.k if self.training else self.k_inference
        scores = self.boosted(x)
        if self.local:
            # Channels last, one row per (sample, position): top-k over the channels of each position.
            rows = scores.permute(0, 2, 3, 1).reshape(-1, self.channels)
            mask = winners_mask(rows, k, self.break_ties, self.relu)
            mask = mask.reshape(x.shape[0], x.shape[2], x.shape[3], self.channels).permute(0, 3, 1, 2)
        else:
            mask = winners_mask(scores.flatten(1), k, self.break_ties, self.relu).reshape(x.shape)
        y = x * mask
        if self.training:
            positions = x.shape[2] * x.shape[3]
            self.update_duty_cycle((y > 0).sum(dim=(0, 2, 3)) / positions, len(x))
        return y

    def extra_repr(self) -> str:
        return f"channels={self.channels}, k={self.k}, k_inference={self.k_inference}, local={self.local}"
