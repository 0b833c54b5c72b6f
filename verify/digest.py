"""Canonical SHA-256 digests of parameters.

The digest covers, for each tensor in sorted name order: the name, the dtype, the shape and the raw
little-endian bytes. It never hashes ``torch.save`` output, whose bytes depend on pickling details
and storage sharing rather than on values.
"""

from __future__ import annotations

import hashlib
import sys
from typing import Mapping, Sequence, Union

import numpy as np
import torch

Tensorish = Union[torch.Tensor, np.ndarray]


def _raw_little_endian(value: Tensorish) -> tuple[str, tuple[int, ...], bytes]:
    if isinstance(value, torch.Tensor):
        tensor = value.detach().to("cpu").contiguous()
        dtype_name = str(tensor.dtype).removeprefix("torch.")
        if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16: hash its 16-bit pattern
            array = tensor.view(torch.int16).numpy()
        else:
            array = tensor.numpy()
        shape = tuple(tensor.shape)
    else:
        array = np.ascontiguousarray(value)
        dtype_name = array.dtype.name
        shape = tuple(array.shape)
    if array.dtype.byteorder == ">" or (array.dtype.byteorder == "=" and sys.byteorder == "big"):
        array = array.byteswap()
    return dtype_name, shape, array.tobytes(order="C")


def canonical_digest(tensors: Mapping[str, Tensorish] | Sequence[Tensorish]) -> str:
    """Hex SHA-256 of a state dict (names sorted) or a list of tensors (indexed '000000', ...)."""
    if isinstance(tensors, Mapping):
        named = dict(tensors)
    else:
        named = {f"{i:06d}": t for i, t in enumerate(tensors)}
    digest = hashlib.sha256()
    for name in sorted(named):
        dtype_name, shape, raw = _raw_little_endian(named[name])
        header = f"{name}\0{dtype_name}\0{','.join(map(str, shape))}\0"
        digest.update(header.encode("utf-8"))
        digest.update(len(raw).to_bytes(8, "little"))
        digest.update(raw)
    return digest.hexdigest()
