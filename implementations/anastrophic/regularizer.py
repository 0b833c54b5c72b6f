"""The Anastrophic regulariser as the script implements it (spec §1).

For every parameter whose name contains "weight", with w its row-major flattening and X = fft(w)
the unnormalised full complex DFT:

* spectral coherence Phi(W) = |sum_k p_k exp(i arg X_k)|, p_k = |X_k|^2 / (sum_j |X_j|^2 + 1e-8);
* "Anastrophic Beta" BB(W, W_prev) = mean over the 2N real numbers of (X - X_prev) viewed as
  (real, imaginary) pairs, which equals 1/2 ||W - W_prev||^2 (Parseval, spec §1.3);
* R_ana = sum over those tensors of lambda (1 - Phi(W)) + eta BB(W, W_prev), lambda = 1, eta = 3.

The penalty applies only once an anchor exists, i.e. from the first step of Task B (spec §1.4).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from implementations.common.streams import Task
from implementations.common.training import Strategy

POWER_EPSILON = 1e-8  # added to the denominator of p_k, as the script does (spec §1.5)


def regularised_names(model: nn.Module) -> list[str]:
    """The tensors the script regularises: names containing "weight" (biases never, spec §1.1)."""
    return [name for name, _ in model.named_parameters() if "weight" in name]


def spectral_coherence(weight: torch.Tensor) -> torch.Tensor:
    """Phi: power-weighted mean resultant length of the DFT phases of the flattened tensor (§1.2)."""
    spectrum = torch.fft.fft(weight.reshape(-1))
    amplitude, phase = spectrum.abs(), spectrum.angle()
    power = amplitude ** 2 / ((amplitude ** 2).sum() + POWER_EPSILON)
    return torch.abs((power * torch.exp(1j * phase)).sum())


def beta_proxy(weight: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """BB: mean squared error between the (real, imaginary) DFT arrays of W and W_prev (§1.3).

    The DFT of the constant W_prev is recomputed on every call, as in the script: with Phi's own
    transform that makes 3 FFTs per tensor per step, which the timing claims measure.
    """
    current = torch.view_as_real(torch.fft.fft(weight.reshape(-1)))
    old = torch.view_as_real(torch.fft.fft(previous.detach().reshape(-1)))
    return ((current - old) ** 2).mean()


class AnastrophicRegularization(Strategy):
    """Cross-entropy plus R_ana toward a deep copy of the model taken after the first task.

    coherence_weight is lambda, beta_weight is eta (script: 1.0 and 3.0). The anchor is taken once
    and never updated: the script has two tasks only (spec §1.5). `term_history` keeps the lambda
    and eta parts of every step separately (spec §1.4 asks for them apart).
    """

    def __init__(self, coherence_weight: float = 1.0, beta_weight: float = 3.0):
        self.coherence_weight = coherence_weight
        self.beta_weight = beta_weight
        self.previous_model: nn.Module | None = None
        self.term_history: list[tuple[torch.Tensor, torch.Tensor]] = []

    def terms(self, model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """(lambda part, eta part) of R_ana against the stored previous weights."""
        previous = dict(self.previous_model.named_parameters())
        coherence_part = beta_part = torch.zeros((), device=next(model.parameters()).device)
        for name, weight in model.named_parameters():
            if "weight" not in name:
                continue
            coherence_part = coherence_part + self.coherence_weight * (1 - spectral_coherence(weight))
            beta_part = beta_part + self.beta_weight * beta_proxy(weight, previous[name])
        return coherence_part, beta_part

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: Task) -> torch.Tensor:
        loss = super().loss(model, x, y, task)
        if self.previous_model is None:
            return loss
        coherence_part, beta_part = self.terms(model)
        self.term_history.append((coherence_part.detach(), beta_part.detach()))
        return loss + coherence_part + beta_part

    def after_task(self, model: nn.Module, task: Task) -> None:
        if self.previous_model is None:
            self.previous_model = copy.deepcopy(model).eval()
            for parameter in self.previous_model.parameters():
                parameter.requires_grad_(False)

    def stored_floats(self) -> int:
        """The script deep-copies the whole model: every parameter, though only weights are used."""
        return sum(p.numel() for p in self.previous_model.parameters())
