"""One run's context: its seed, device and data directory, and the random streams drawn from its seed.

The engine builds a `RunContext` for every run, re-seeds the run's global generators with it and
hands it to a protocol that takes `context` (keyword-only, instead of `seed, device, data_dir`):
such a protocol seeds nothing itself. It asks the context for a private generator where a stream
must not depend on what else drew random numbers, and calls `reseed()` where the source re-seeds
(e.g. before each method it compares), so the seeding a run does is read in one place.

Systems move onto it one at a time, each with its bundle refresh (a protocol's code version covers
the modules it imports; see docs/CONTRACTS.md, "Seeding"). A protocol still taking `seed, device,
data_dir` is called as before.
"""

from __future__ import annotations

import inspect
import pathlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .seeding import seed_everything, torch_generator

_SPELLED_OUT = ("seed", "device", "data_dir")


@dataclass(frozen=True)
class RunContext:
    """What a protocol may know about the run it computes: nothing else varies between runs."""

    seed: int
    device: str
    data_dir: pathlib.Path

    def reseed(self) -> None:
        """python's `random`, numpy's legacy global generator and torch (CPU and CUDA) at the run's seed,
        deterministic algorithms on: what the engine does before the protocol starts."""
        seed_everything(self.seed)

    def torch_generator(self, stream: str, *, seed_offset: int = 0) -> torch.Generator:
        """A fresh private torch generator on the CPU for the stream named `stream` (e.g. "batch order"),
        at the run's seed plus `seed_offset`. Streams are independent in use, not in value: each call
        starts afresh, so what one part of a protocol draws never shifts another part's draws; a stream
        that must not repeat another's numbers takes its own offset."""
        del stream  # the name is for the reader: the seed and offset alone decide the numbers
        return torch_generator(self.seed + seed_offset)

    def spawn(self, n: int) -> list[RunContext]:
        """`n` child contexts (same device and data) whose seeds numpy's `SeedSequence(seed).spawn(n)`
        derives (each child's first 32-bit state word): streams that must differ in value, e.g. a wake
        and a sleep phase, each with its own generators."""
        children = np.random.SeedSequence(self.seed).spawn(n)
        return [RunContext(int(child.generate_state(1)[0]), self.device, self.data_dir) for child in children]

    def numpy_generator(self, stream: int) -> np.random.Generator:
        """numpy's generator for the numbered stream `stream` of this run: `default_rng([seed, stream])`,
        distinct numbers for distinct streams."""
        return np.random.default_rng([self.seed, stream])


def takes_context(protocol: Callable[..., dict]) -> bool:
    """Whether `protocol` takes a `RunContext` (`context=`) rather than `seed, device, data_dir`.

    Raises TypeError for a protocol that takes `context` and also any of `seed, device, data_dir`: the
    context carries them, and two sources of one seed would drift apart.
    """
    parameters = inspect.signature(protocol).parameters
    if "context" not in parameters:
        return False
    both = [name for name in _SPELLED_OUT if name in parameters]
    if both:
        raise TypeError(f"protocol {protocol.__module__}:{protocol.__qualname__} takes `context` and "
                        f"{', '.join(f'`{name}`' for name in both)}: take `context` alone (it carries seed, "
                        f"device and data_dir)")
    return True


def call_protocol(protocol: Callable[..., dict], context: RunContext, **params) -> dict:
    """`protocol(context=context, **params)` or `protocol(seed=..., device=..., data_dir=..., **params)`,
    whichever it takes. Seeds nothing: the caller has (`context.reseed()`)."""
    if takes_context(protocol):
        return protocol(context=context, **params)
    return protocol(seed=context.seed, device=context.device, data_dir=context.data_dir, **params)
