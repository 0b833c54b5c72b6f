"""Host-to-device copies that do not stall the device queue (engine issue, GPU hygiene).

A value drawn on the host inside the step loop (the faithful protocols draw batch choices and noise
with CPU generators, so that CPU and CUDA runs see the same numbers) must reach the device without a
blocking copy: from pageable memory, CUDA's copy waits for every queued kernel. From pinned memory
it is asynchronous, and torch keeps the pinned buffer alive until the copy has run.
"""

from __future__ import annotations

import torch


def to_device(values: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """`values` on `device`; a CPU tensor goes to a CUDA device through pinned memory, without a sync."""
    device = torch.device(device)
    if values.device.type == "cpu" and device.type == "cuda":
        return values.pin_memory().to(device, non_blocking=True)
    return values.to(device)
