"""Our training loop and EWC against a plain PyTorch loop and Avalanche, on the same run. Not in CI.

The run is the EWC benchmark's (benchmarks/test_ewc_fisher.py): Split MNIST's first two tasks
(digits 0/1, then 2/3), MLP 784-400-400-10, batch 64, one epoch per task, SGD lr 0.01, EWC
strength 100. Six runs, alternated round by round so a change in machine load touches all alike:

  fine-tuning: plain loop | ours (train_task + FineTuning) | Avalanche Naive
  EWC:         plain loop | ours (train_task + EWC)        | Avalanche EWC (mode "separate")

Ours and the plain loops compute the same thing to the bit (the benchmarks assert it). Avalanche
runs as a user would run it with the least overhead: no metrics, no loggers, no evaluation; its EWC
estimates the Fisher from squared mini-batch gradients, a cheaper estimator than the per-sample one
the specs prescribe, so its EWC ratio is Avalanche as it is, not the same computation.

Avalanche needs torchvision, which does not import beside torch 2.13.0's CPU build, so it runs from
its own environment:

    python3 -m venv /work/avalanche-venv
    /work/avalanche-venv/bin/pip install torch==2.14.1 torchvision==0.29.1 avalanche-lib==0.6.0
    CLAIMS_DATA_DIR=../shared/datasets /work/avalanche-venv/bin/python scripts/compare_avalanche.py

It prints a Markdown table (median seconds per run, each run's ratio to the plain loop of the same
method with the spread over rounds), the date, the machine and the versions.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from benchmarks.test_ewc_fisher import BATCH, STRENGTH, fresh_model_and_optimizer, harness_run, plain_run  # noqa: E402
from implementations.baselines.finetune import FineTuning  # noqa: E402
from implementations.common.datasets import DatasetMissing, load_mnist, resolve_data_dir  # noqa: E402
from implementations.common.seeding import torch_generator  # noqa: E402
from implementations.common.streams import class_split  # noqa: E402
from implementations.common.training import train_task  # noqa: E402


def plain_finetune(tasks):
    model, optimizer = fresh_model_and_optimizer()
    generator = torch_generator(0)
    for task in tasks:
        model.train()
        for batch in torch.randperm(len(task.x_train), generator=generator).split(BATCH):
            loss = F.cross_entropy(model(task.x_train[batch]), task.y_train[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return model


def harness_finetune(tasks):
    model, optimizer = fresh_model_and_optimizer()
    generator = torch_generator(0)
    for task in tasks:
        train_task(model, FineTuning(), task, epochs=1, batch_size=BATCH, optimizer=optimizer, generator=generator)
    return model


def avalanche_runs(tasks):
    """Avalanche's Naive and EWC on the same tensors, or a one-line reason it cannot run here."""
    try:
        from avalanche.benchmarks.scenarios.deprecated.generators import tensors_benchmark
        from avalanche.training import EWC, Naive
        from avalanche.training.plugins import EvaluationPlugin
    except Exception as error:  # noqa: BLE001 - an import error of torchvision is as final as a missing package
        return None, f"Avalanche cannot be imported here ({type(error).__name__}: {error}); see this script's docstring"

    stream = tensors_benchmark(
        train_tensors=[(task.x_train, task.y_train) for task in tasks],
        test_tensors=[(task.x_test, task.y_test) for task in tasks],
        task_labels=[0] * len(tasks),
    )

    def run(strategy_class, **options):
        def go():
            model, optimizer = fresh_model_and_optimizer()
            strategy = strategy_class(model=model, optimizer=optimizer, criterion=torch.nn.CrossEntropyLoss(),
                                      train_mb_size=BATCH, train_epochs=1, eval_every=-1, device="cpu",
                                      evaluator=EvaluationPlugin(loggers=[]), **options)
            for experience in stream.train_stream:
                strategy.train(experience)
            return model
        return go

    return {"naive": run(Naive), "ewc": run(EWC, ewc_lambda=STRENGTH, mode="separate")}, None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="alternated rounds (default 5), after one warm-up")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, as the claims runs)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        train, test = load_mnist(resolve_data_dir(), "train"), load_mnist(resolve_data_dir(), "test")
    except DatasetMissing as missing:
        print(f"compare_avalanche: {missing}", file=sys.stderr)
        return 2
    tasks = class_split(train, test, task_classes=[(0, 1), (2, 3)], device="cpu")
    avalanche, why_not = avalanche_runs(tasks)
    runs = {
        ("fine-tuning", "plain"): lambda: plain_finetune(tasks),
        ("fine-tuning", "ours"): lambda: harness_finetune(tasks),
        ("EWC", "plain"): lambda: plain_run(tasks),
        ("EWC", "ours"): lambda: harness_run(tasks),
    }
    if avalanche is not None:
        runs[("fine-tuning", "Avalanche")] = avalanche["naive"]
        runs[("EWC", "Avalanche")] = avalanche["ewc"]
    else:
        print(f"note: {why_not}", file=sys.stderr)
    seconds: dict[tuple[str, str], list[float]] = {key: [] for key in runs}
    for round_index in range(args.rounds + 1):
        for key, run in runs.items():
            started = time.perf_counter()
            run()
            if round_index:  # the first round warms caches and the allocator
                seconds[key].append(time.perf_counter() - started)
        print(f"round {round_index}/{args.rounds} done", file=sys.stderr)

    versions = f"torch {torch.__version__}"
    if avalanche is not None:
        import avalanche as avalanche_package

        versions += f", avalanche-lib {avalanche_package.__version__}"
    print(f"\nSplit MNIST tasks 0/1 and 2/3, MLP 784-400-400-10, batch 64, 1 epoch per task; "
          f"{args.rounds} alternated rounds after a warm-up, {args.threads} thread(s).")
    print(f"{datetime.date.today().isoformat()}, {cpu_model()} ({os.cpu_count()} cores), {versions}.\n")
    print("| method | run | median s | ratio to plain (median) | ratio range over rounds |")
    print("|---|---|---|---|---|")
    for (method, who), values in sorted(seconds.items(), key=lambda item: item[0][0] != "fine-tuning"):
        plain = seconds[(method, "plain")]
        ratios = [value / base for value, base in zip(values, plain)]
        print(f"| {method} | {who} | {statistics.median(values):.2f} | {statistics.median(ratios):.2f}x | "
              f"{min(ratios):.2f}-{max(ratios):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
