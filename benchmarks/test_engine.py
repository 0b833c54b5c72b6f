"""Speed of the engine: a local pool of 2 workers against one process, and the planner's overhead.

Ratios are measured in one run with rounds alternating between the arms, so a change in machine
load affects both alike; nothing here asserts on time. Printed lines (run with -s) and the
pytest-benchmark table carry the figures; `extra_info` keeps them in --benchmark-json output.
"""

import statistics
import time
from dataclasses import replace
from pathlib import Path

import pytest

from implementations.common.datasets import DatasetMissing, load_mnist
from verify.executors import PoolExecutor, SequentialExecutor
from verify.ledger import load_all, load_ledger
from verify.runner import Runner
from verify.store import ResultsStore, Run

REPO = Path(__file__).resolve().parent.parent
ROUNDS = 2
SEEDS = (0, 1, 2, 3)


@pytest.fixture(scope="module")
def data_dir(benchmark_data_dir):
    directory = benchmark_data_dir
    try:
        load_mnist(directory, "train")
    except DatasetMissing as missing:
        pytest.skip(f"the workers benchmark trains on MNIST: {missing}")
    return directory


def anastrophic_entry():
    """A mid-sized smoke protocol (two-task Split MNIST, EWC sweep): ~5-10 s a seed on one core."""
    entries = {entry.id: entry for entry in load_ledger(REPO / "claims" / "anastrophic" / "claims.toml")}
    ci_entries = [entry for entry in entries.values()
                  if entry.protocol.endswith(":two_task_split_mnist") and entry.tier == "ci"]
    return replace(ci_entries[0], seeds=SEEDS)


def test_two_workers_against_one(tmp_path, data_dir, benchmark):
    entry = anastrophic_entry()
    seconds = {"1 worker": [], "2 workers": []}
    for round_index in range(ROUNDS):
        for arm, executor in (("1 worker", SequentialExecutor(data_dir)),
                              ("2 workers", PoolExecutor(data_dir, workers=2))):
            runner = Runner(ResultsStore(tmp_path / f"{arm}-{round_index}.sqlite"), data_dir, threads=1,
                            progress=lambda message: None)
            plan = runner.plan([entry])
            started = time.perf_counter()
            runner.execute_plan(plan, executor, workers=2)
            seconds[arm].append(time.perf_counter() - started)
            assert not runner.failures
    ratios = [one / two for one, two in zip(seconds["1 worker"], seconds["2 workers"])]
    benchmark.extra_info.update({"seconds": seconds, "speedup": ratios, "runs": len(SEEDS), "threads_per_run": 1})
    print(f"\n{len(SEEDS)} runs of {entry.protocol}, 1 thread each: 1 worker {seconds['1 worker']} s, "
          f"2 workers {seconds['2 workers']} s; speed-up per round {[f'{r:.2f}x' for r in ratios]} "
          f"(median {statistics.median(ratios):.2f}x)")
    benchmark.pedantic(lambda: None, rounds=1)


def test_planner_overhead_on_a_fully_cached_suite(tmp_path, benchmark):
    """Plan every entry of every ledger against a store that holds all their runs (nothing pending)."""
    entries = load_all(REPO / "claims")
    store = ResultsStore(tmp_path / "cached.sqlite")
    runner = Runner(store, tmp_path, progress=lambda message: None)
    for job in runner.plan(entries).jobs:
        for spec in job.specs:
            store.put_run(Run(spec.key, spec.protocol, spec.params, spec.seed, spec.device, "bench",
                              spec.torch_version, spec.code_version, {}, 1.0, "2026-01-01T00:00:00+00:00",
                              spec.threads))
    started = time.perf_counter()
    load_all(REPO / "claims")
    loading = time.perf_counter() - started

    def plan():
        return Runner(store, tmp_path, progress=lambda message: None).plan(entries)

    result = benchmark.pedantic(plan, rounds=5, warmup_rounds=1)
    assert result.pending_runs == 0
    planning = benchmark.stats.stats.median
    benchmark.extra_info.update({"entries": len(entries), "cached_runs": result.cached, "ledger_load_s": loading})
    print(f"\nplanning {len(entries)} entries ({result.cached} stored runs): median {planning * 1000:.0f} ms, "
          f"{planning / loading:.2f}x the time to load the ledgers ({loading * 1000:.0f} ms)")
