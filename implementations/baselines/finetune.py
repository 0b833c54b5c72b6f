"""Fine-tuning: train on each task in turn with nothing against forgetting (the lower baseline)."""

from __future__ import annotations

from implementations.common.training import Strategy


class FineTuning(Strategy):
    """The Strategy defaults: cross-entropy on the current task only."""
