"""Fixtures shared by the test modules, and what pytest sessions started by the tests need."""

import importlib.metadata
import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent


def _plugin_autoloads() -> bool:
    """Whether a pytest started here loads the claims plugin by itself (the package is installed)."""
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        return False
    return any(point.name == "claims" for point in importlib.metadata.entry_points(group="pytest11"))


# Sessions the tests start (pytester, subprocess) find this checkout and its plugin also where the
# package is not installed (a GPU machine running the checkout with PYTHONPATH=.).
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
if not _plugin_autoloads() and "verify.pytest_plugin" not in os.environ.get("PYTEST_PLUGINS", ""):
    os.environ["PYTEST_PLUGINS"] = ",".join(filter(None, [os.environ.get("PYTEST_PLUGINS"), "verify.pytest_plugin"]))


@pytest.fixture
def one_thread():
    """One intra-op thread: tiny models only gain synchronisation (and spinning on a busy host) from a
    second one, and products over one thread sum in one order, which bitwise comparisons rely on."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _checked_data_dir(load):
    """The data directory, once `load`'s train and test files parse there; a missing one skips, naming it."""
    from implementations.common.datasets import DatasetMissing, resolve_data_dir

    directory = resolve_data_dir()
    try:
        load(directory, "train"), load(directory, "test")  # parsed once, cached for the module's tests
    except DatasetMissing as missing:
        pytest.skip(str(missing))
    return directory


@pytest.fixture(scope="module")
def mnist_data_dir():
    from implementations.common.datasets import load_mnist

    return _checked_data_dir(load_mnist)


@pytest.fixture(scope="module")
def cifar10_data_dir():
    from implementations.common.datasets import load_cifar10

    return _checked_data_dir(load_cifar10)
