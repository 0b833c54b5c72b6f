"""Counting reads of a tensor, to show which training phase touches which data.

`watch(tensor, log)` returns a view of the same storage whose every torch operation (indexing,
arithmetic, `len`, ...) is counted in `log` before it runs; results are plain tensors, so a read does
not spread the counting into the model. A phase that never uses the data leaves the count at 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.utils._pytree import tree_leaves


@dataclass
class ReadLog:
    """How many torch operations have read the watched tensors, and which ones."""

    reads: int = 0
    operations: set[str] = field(default_factory=set)


class WatchedTensor(torch.Tensor):
    """A tensor that reports every torch operation it takes part in to its `read_log`."""

    read_log: ReadLog

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        for leaf in tree_leaves((args, kwargs)):
            if isinstance(leaf, WatchedTensor):
                leaf.read_log.reads += 1
                leaf.read_log.operations.add(getattr(func, "__name__", repr(func)))
        with torch._C.DisableTorchFunctionSubclass():
            return func(*args, **kwargs)


def watch(tensor: torch.Tensor, log: ReadLog) -> WatchedTensor:
    watched = tensor.as_subclass(WatchedTensor)
    watched.read_log = log
    return watched


def unwatch(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.as_subclass(torch.Tensor)
