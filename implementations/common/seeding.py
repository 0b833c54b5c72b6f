"""Seeding of every random number source a run touches, and deterministic algorithms."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed python's `random`, numpy's legacy global generator and torch (CPU and every CUDA device).

    Also makes torch use deterministic algorithms, raising on an operation that has none rather
    than silently varying between runs. cuBLAS is deterministic only with a fixed workspace, which
    it reads from CUBLAS_WORKSPACE_CONFIG when its first handle is created: set here (if the user
    has not chosen one) so that it is in place before any CUDA matrix product.
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds the CUDA generators too (lazily, if CUDA is not initialised yet)
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=False)


def torch_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A private generator, so that e.g. batch order does not depend on what else drew random numbers."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator
