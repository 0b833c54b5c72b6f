"""Fixtures shared by the test modules."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """One intra-op thread: tiny models only gain synchronisation (and spinning on a busy host) from a
    second one, and products over one thread sum in one order, which bitwise comparisons rely on."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
