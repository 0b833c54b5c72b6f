"""Speed of training five seeds in one seed-batched pass against five sequential protocol calls.

Three forms at a reduced size: the sparse-synapse Permuted MNIST MLP (dense and sparse arms, the
headline table), SGM's gradient masking on Split MNIST (a baseline and an SGM model per seed) and
DTG-MA's Split MNIST table (its minibatch methods: DTG-MA, LoRA, Adapter, DER++).
Five pre-registered seeds, as the run engine would call them: one protocol call per seed after its run
context's `reseed()` (`seed_batching.each_seed_sequentially`, either calling convention), or one call of the
seed-batched form. On CUDA when available (where a step
of a small MLP is launch-bound and batching should pay), else on the CPU (where it should not:
DESIGN.md measured 0.7-0.9x on 2 cores).

Each round times both, alternating which goes first, so a change in machine load during the run
affects both alike. The speed-up (sequential time / batched time) is reported with its median and
spread over the rounds, with the device, in `benchmark.extra_info` and on stdout (`-s`). Nothing is
asserted about it: the property tests in tests/test_*_batched.py check the outputs.
"""

import statistics
import time

import pytest
import torch

from implementations.common.datasets import DatasetMissing, load_mnist, resolve_data_dir
from implementations.common.seed_batching import each_seed_sequentially
from implementations.common.seeding import seed_everything
from implementations.dtgma.protocols import baseline_table
from implementations.dtgma.seed_batched import baseline_table_seeds
from implementations.sgm.protocols import gradient_masking_split
from implementations.sgm.seed_batched import gradient_masking_split_seeds
from implementations.sparse_synapses.protocols import permuted_mnist_mlp
from implementations.sparse_synapses.seed_batched import permuted_mnist_mlp_seeds

SEEDS = (0, 1, 2, 3, 4)
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
CASES = {
    # The published network's shape of k-WTA (k = 4 winners) on a narrower layer and a subset of MNIST.
    "permuted-mnist-mlp": (permuted_mnist_mlp, permuted_mnist_mlp_seeds,
                           dict(arms=["dense", "sparse"], hidden_units=400, percent_on_fc=0.01, n_tasks=3, epochs=1,
                                train_size=1000, test_size=500)),
    # The script's 784-1024-1024-2 MLPs on the first 2000 images of three digit pairs, one epoch each.
    "sgm-gradient-masking": (gradient_masking_split, gradient_masking_split_seeds,
                             dict(n_tasks=3, epochs=1, max_per_task=2000, max_test_per_task=1000)),
    # DTG-MA's Split MNIST table with its minibatch methods (the ones the form batches), 300 images per
    # digit, 3 epochs per task.
    "dtgma-minibatch-methods": (baseline_table, baseline_table_seeds,
                                dict(methods=("dtgma", "lora", "adapter", "derpp"), epochs=3,
                                     stream_options={"train_per_class": 300, "test_per_class": 100})),
}
ROUNDS = 3


@pytest.fixture(scope="module")
def data_dir():
    directory = resolve_data_dir()
    try:
        load_mnist(directory, "train"), load_mnist(directory, "test")  # parsed once, cached for the rounds
    except DatasetMissing as missing:
        pytest.skip(str(missing))
    return directory


def sequential(protocol, form, params, data_dir):
    each_seed_sequentially(protocol, SEEDS, device=DEVICE, data_dir=data_dir, **params)


def batched(protocol, form, params, data_dir):
    seed_everything(SEEDS[0])
    form(seeds=SEEDS, device=DEVICE, data_dir=data_dir, **params)


def timed(run, case, data_dir) -> float:
    if DEVICE == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    run(*case, data_dir)
    if DEVICE == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def rounds_of(case, data_dir, seconds: dict[str, list[float]]):
    """One round: both sides once, the one that went second going first next time."""
    order = [("sequential", sequential), ("batched", batched)]

    def one_round():
        for label, run in order:
            seconds[label].append(timed(run, case, data_dir))
        order.reverse()

    return one_round


def summary(name: str, case, seconds: dict[str, list[float]]) -> dict:
    """The speed-up (sequential / batched) per round after the warm-up, with the device; printed too."""
    speedups = [s / b for s, b in zip(seconds["sequential"][1:], seconds["batched"][1:])]  # warm-up round left out
    device_name = torch.cuda.get_device_name() if DEVICE == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"\n{name}, {len(SEEDS)} seeds on {device_name}: sequential/batched time = "
          f"{statistics.median(speedups):.2f}x (median of {len(speedups)} rounds, range "
          f"{min(speedups):.2f}-{max(speedups):.2f})", flush=True)
    return dict(device=device_name, torch=torch.__version__, seeds=len(SEEDS), params=case[2],
                sequential_seconds=seconds["sequential"][1:], batched_seconds=seconds["batched"][1:],
                speedup_median=statistics.median(speedups), speedup_min=min(speedups), speedup_max=max(speedups))


@pytest.mark.parametrize("name", CASES)
def test_seed_batching_speedup(benchmark, data_dir, name):
    benchmark.group = f"{name}-5-seeds"
    case = CASES[name]
    seconds: dict[str, list[float]] = {"sequential": [], "batched": []}
    benchmark.pedantic(rounds_of(case, data_dir, seconds), rounds=ROUNDS, warmup_rounds=1)
    benchmark.extra_info.update(summary(name, case, seconds))


def main(argv: list[str] | None = None) -> None:
    """The same measurement without pytest-benchmark (a GPU machine that has pytest but not the plugin):
    `python benchmarks/test_seed_batching.py [--json FILE] [case ...]`."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", metavar="case", help=f"of {', '.join(CASES)} (default: all)")
    parser.add_argument("--json", help="write the measurements here")
    args = parser.parse_args(argv)
    unknown = [name for name in args.cases if name not in CASES]
    if unknown:
        parser.error(f"unknown case {unknown[0]!r}; choose from {', '.join(CASES)}")
    data_dir = resolve_data_dir()
    results = {}
    for name in args.cases or CASES:
        seconds: dict[str, list[float]] = {"sequential": [], "batched": []}
        one_round = rounds_of(CASES[name], data_dir, seconds)
        for _ in range(1 + ROUNDS):  # the warm-up round first, as pedantic's
            one_round()
        results[name] = summary(name, CASES[name], seconds)
        if args.json:
            with open(args.json, "w") as file:
                json.dump(results, file, indent=1)


if __name__ == "__main__":
    main()
