"""Fixed random weight masks around a Linear or Conv2d (spec §5.3 SparseWeights / SparseWeights2d).

Two documented behaviours, chosen explicitly with `behaviour` (§5.3 "When the mask is enforced"):

* ``"2019"``: the library the published runs used. The mask draws the *zeros*,
  round((1 - density) * fan_in) per unit, with a permutation; `forward` re-zeroes the masked weights
  in training mode *before* calling the module, so the last optimizer step before evaluation is not
  undone (the masked weights hold one update while evaluating).
* ``"rezero_after_step"``: today's library. The mask draws the *kept* positions,
  round(density * fan_in) per unit, without replacement; `forward` never re-zeroes, and the training
  loop must call `rezero_weights(model)` after every optimizer step (as `SparseSynapses` does), which
  keeps the mask exact at evaluation too.

`density` is the fraction of weights kept (the 2019 `weight_sparsity`); the bias is never masked.
Draws come from an explicit numpy Generator so that a run depends on its seed only (the original
used numpy's unseeded global generator).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

BEHAVIOURS = ("2019", "rezero_after_step")


def kept_per_unit(density: float, fan_in: int, behaviour: str) -> int:
    """How many inputs each unit keeps; the two behaviours can differ by one through rounding."""
    if behaviour == "2019":
        return fan_in - int(round((1 - density) * fan_in))
    if behaviour == "rezero_after_step":
        return int(round(density * fan_in))
    raise ValueError(f"unknown behaviour {behaviour!r}; use one of {BEHAVIOURS}")


def draw_zero_mask(units: int, fan_in: int, density: float, behaviour: str, rng: np.random.Generator) -> torch.Tensor:
    """Boolean (units, fan_in) mask, True where a weight is forced to zero; the same count per unit."""
    if not 0 < density < 1:
        raise ValueError(f"density must lie in (0, 1), got {density}")
    kept = kept_per_unit(density, fan_in, behaviour)
    zero_mask = np.zeros((units, fan_in), dtype=bool)
    for unit in range(units):
        if behaviour == "2019":
            zero_mask[unit, rng.permutation(fan_in)[: fan_in - kept]] = True
        else:
            zero_mask[unit] = True
            zero_mask[unit, rng.choice(fan_in, size=kept, replace=False)] = False
    return torch.from_numpy(zero_mask)


class _SparseWeightsBase(nn.Module):
    def __init__(self, module: nn.Module, density: float, behaviour: str, rng: np.random.Generator):
        super().__init__()
        if behaviour not in BEHAVIOURS:
            raise ValueError(f"unknown behaviour {behaviour!r}; use one of {BEHAVIOURS}")
        self.module = module
        self.density = density
        self.behaviour = behaviour
        units = module.weight.shape[0]
        fan_in = module.weight[0].numel()
        mask = draw_zero_mask(units, fan_in, density, behaviour, rng).reshape(module.weight.shape)
        self.register_buffer("zero_mask", mask.to(module.weight.device))
        self.rezero_weights()

    @torch.no_grad()
    def rezero_weights(self) -> None:
        self.module.weight.masked_fill_(self.zero_mask, 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.behaviour == "2019" and self.training:
            self.rezero_weights()
        return self.module(x)

    def nonzero_weights(self) -> int:
        return int((~self.zero_mask).sum())

    def extra_repr(self) -> str:
        return f"density={self.density}, behaviour={self.behaviour!r}"


class SparseWeights(_SparseWeightsBase):
    """A Linear whose every output unit keeps the same number of randomly chosen inputs."""

    def __init__(self, module: nn.Linear, density: float, behaviour: str, rng: np.random.Generator):
        if not isinstance(module, nn.Linear):
            raise TypeError(f"SparseWeights wraps an nn.Linear, got {type(module).__name__}")
        super().__init__(module, density, behaviour, rng)


class SparseWeights2d(_SparseWeightsBase):
    """A Conv2d whose every output channel keeps the same number of its in_channels * kh * kw inputs."""

    def __init__(self, module: nn.Conv2d, density: float, behaviour: str, rng: np.random.Generator):
        if not isinstance(module, nn.Conv2d):
            raise TypeError(f"SparseWeights2d wraps an nn.Conv2d, got {type(module).__name__}")
        super().__init__(module, density, behaviour, rng)


def rezero_weights(model: nn.Module) -> None:
    """Re-apply every mask in `model` that is enforced after optimizer steps (today's behaviour)."""
    for module in model.modules():
        if isinstance(module, _SparseWeightsBase) and module.behaviour == "rezero_after_step":
            module.rezero_weights()


def nonzero_parameter_count(model: nn.Module) -> int:
    """Parameters that the masks do not force to zero (what a sparse model really stores)."""
    masked = sum(int(m.zero_mask.sum()) for m in model.modules() if isinstance(m, _SparseWeightsBase))
    return sum(p.numel() for p in model.parameters()) - masked
