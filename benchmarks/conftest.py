"""Benchmarks find datasets the way the claims do: --data-dir, else $CLAIMS_DATA_DIR, else the
per-user cache folder (scripts/run-benchmarks.sh points it at ../shared/datasets like the other
scripts)."""

import pytest

from implementations.common.datasets import resolve_data_dir


@pytest.fixture(scope="session")
def benchmark_data_dir(request):
    return resolve_data_dir(request.config.getoption("data_dir"))
