"""Named experiments for the MyGO claims (spec `shared/specs/mygo.md`).

Every protocol takes keyword-only `context` (the run's `RunContext`: seed, device, data directory and
private generators; the engine has seeded the run) plus its parameters with the script's defaults and
returns a JSON-serialisable dict. CV benchmark (spec §2.1): Split MNIST, 5 tasks of
digit pairs (0,1) ... (8,9), local labels 0/1, pixels normalised to [-1, 1]. The script evaluates on
the training images; every protocol reports that (`train_data_*`) and the official test split.
Matrices are T x T: R[i][j] for j > i is 0 where no head for task j exists yet.
"""

from __future__ import annotations

import copy
import gzip
import pathlib

import numpy as np
import torch

from implementations.common.data_access import ReadLog, watch
from implementations.baselines.finetune import FineTuning
from implementations.common.datasets import DatasetMissing, load_mnist
from implementations.common.evaluation import accuracy
from implementations.common.models import count_parameters
from implementations.common.run_context import RunContext
from implementations.common.streams import Task, class_split
from implementations.common.training import run_stream, train_task
from implementations.mygo.networks import Generator, NeocortexNet, SharedHeadNet
from implementations.mygo.replay import ExemplarReplay
from implementations.mygo.wake_sleep import (
    SleepRecord,
    as_described_teacher,
    faithful_teacher,
    sleep_phase,
    wake_phase,
)

VARIANTS = ("faithful", "as_described")
FLOAT32_BYTES = 4
LABEL_BYTES = 1  # MNIST labels are stored as unsigned bytes


def split_mnist_tasks(data_dir: pathlib.Path, device: str, *, train_per_class: int | None = None,
                      test_per_class: int | None = None, seed: int = 0) -> tuple[list[Task], dict[str, str]]:
    """Five 2-class tasks with local labels, images [N, 1, 28, 28] in [-1, 1] (ToTensor, Normalize(0.5, 0.5))."""
    train, test = load_mnist(data_dir, "train"), load_mnist(data_dir, "test")
    subsampled = train_per_class is not None or test_per_class is not None
    tasks = class_split(train, test, classes_per_task=2, labels="local", device=device, flatten=False,
                        train_per_class=train_per_class, test_per_class=test_per_class,
                        subset_seed=seed if subsampled else None)
    for task in tasks:
        task.x_train = task.x_train.sub_(0.5).div_(0.5)
        task.x_test = task.x_test.sub_(0.5).div_(0.5)
    return tasks, {**train.files, **test.files}


def _as_stored_bytes(task: Task) -> bytes:
    """The task's training images and labels as MNIST stores them (uint8), to count raw and gzip bytes."""
    pixels = torch.round((task.x_train * 0.5 + 0.5) * 255).to(torch.uint8).cpu().numpy()
    return pixels.tobytes() + task.y_train.cpu().numpy().astype(np.uint8).tobytes()


def _row(model: torch.nn.Module, tasks: list[Task], learned: int, split: str) -> list[float]:
    """Accuracy on each task's `split` images with its own head; 0 for tasks without a head yet."""
    return [accuracy(model, getattr(task, f"x_{split}"), getattr(task, f"y_{split}"), task)
            if task.task_id < learned else 0.0 for task in tasks]


def storage_outputs(tasks: list[Task], generator_parameters: int) -> dict:
    """Bytes of one generator (fp32) against each task's raw (uint8) and gzip-compressed data (§3.5)."""
    generator_bytes = generator_parameters * FLOAT32_BYTES
    raw = [_as_stored_bytes(task) for task in tasks]
    raw_bytes = [len(data) for data in raw]
    gzip_bytes = [len(gzip.compress(data, compresslevel=9, mtime=0)) for data in raw]
    float32_bytes = [task.x_train.numel() * FLOAT32_BYTES for task in tasks]
    return {
        "generator_parameters": generator_parameters,
        "generator_bytes": generator_bytes,
        "task_raw_bytes": raw_bytes,
        "task_gzip_bytes": gzip_bytes,
        "task_float32_bytes": float32_bytes,
        "compression_vs_raw": float(np.mean(raw_bytes)) / generator_bytes,
        "compression_vs_gzip": float(np.mean(gzip_bytes)) / generator_bytes,
        "compression_vs_float32": float(np.mean(float32_bytes)) / generator_bytes,
        "exemplars_matching_one_generator": generator_bytes // (28 * 28 + LABEL_BYTES),
    }


def storage_split_mnist(*, context: RunContext) -> dict:
    """Bytes of one CV generator against each Split-MNIST task's full training data (§3.5); no training."""
    tasks, dataset_files = split_mnist_tasks(context.data_dir, context.device)
    return {"dataset_files": dict(dataset_files), **storage_outputs(tasks, count_parameters(Generator()))}


def wake_sleep_split_mnist(
    *,
    context: RunContext,
    variant: str = "faithful",
    wake_epochs: int = 5,
    sleep_steps: int = 1000,
    batch_size: int = 128,
    lr_fast: float = 1e-3,
    lr_slow: float = 1e-4,
    train_per_class: int | None = None,
    test_per_class: int | None = None,
) -> dict:
    """MyGO's CV run (§1.3): for each task, wake (head + cGAN), sleep (distillation), evaluate.

    variant "faithful" is the script (bugs included); "as_described" fixes both bugs (see
    `wake_sleep`). sleep_steps=0 is the no-sleep ablation. Every task's training tensors are
    watched: reads of an old task's data during a later wake, and of any real data during a sleep,
    are counted.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    faithful = variant == "faithful"
    tasks, dataset_files = split_mnist_tasks(context.data_dir, context.device, train_per_class=train_per_class,
                                             test_per_class=test_per_class, seed=context.seed)
    read_logs = [ReadLog() for _ in tasks]
    for task, log in zip(tasks, read_logs):
        task.x_train, task.y_train = watch(task.x_train, log), watch(task.y_train, log)

    model = NeocortexNet().to(context.device)
    initial_features = {name: p.detach().clone() for name, p in model.features.named_parameters()}
    # Separate random streams for wake (batch order, GAN noise) and sleep (generator choice, labels,
    # noise): the no-sleep ablation then sees exactly the same wake phases as the full run.
    wake, sleep = context.spawn(2)
    wake_rng, sleep_rng = wake.torch_generator("wake"), sleep.torch_generator("sleep")
    generators: list[Generator] = []
    sleeps: list[SleepRecord] = []
    test_rows, train_rows = [], []
    old_reads_during_wake = reads_during_sleep = 0
    for task in tasks:
        t = task.task_id
        reads_before = [log.reads for log in read_logs]
        pre_wake = None if faithful else copy.deepcopy(model)
        head_state, generator = wake_phase(model, task, epochs=wake_epochs, batch_size=batch_size, lr=lr_fast,
                                           rng=wake_rng, faithful=faithful)
        old_reads_during_wake += sum(log.reads - before for log, before in zip(read_logs[:t], reads_before[:t]))
        if faithful:
            teacher_for = faithful_teacher(model, t, head_state)
        else:
            for parameter in model.parameters():
                parameter.requires_grad_(True)
            teacher_for = as_described_teacher(pre_wake, copy.deepcopy(model), t)
        reads_before = [log.reads for log in read_logs]
        sleeps.append(sleep_phase(model, teacher_for, generators + [generator], steps=sleep_steps,
                                  batch_size=batch_size, lr=lr_slow, rng=sleep_rng))
        reads_during_sleep += sum(log.reads - before for log, before in zip(read_logs, reads_before))
        generators.append(generator)
        test_rows.append(_row(model, tasks, t + 1, "test"))
        train_rows.append(_row(model, tasks, t + 1, "train"))

    features_unchanged = all(torch.equal(p, initial_features[name]) for name, p in model.features.named_parameters())
    return {
        "dataset_files": dict(dataset_files),
        "variant": variant,
        "accuracy_matrix": test_rows,
        "train_data_accuracy_matrix": train_rows,
        "task_test_sizes": [len(task.y_test) for task in tasks],
        "task_train_sizes": [len(task.y_train) for task in tasks],
        "old_task_reads_during_wake": old_reads_during_wake,
        "real_data_reads_during_sleep": reads_during_sleep,
        "features_unchanged_since_init": features_unchanged,
        "sleep_first_loss": [s.first_loss for s in sleeps],
        "sleep_last_loss": [s.last_loss for s in sleeps],
        "sleep_max_loss_per_task": [s.max_loss for s in sleeps],
        "sleep_mean_loss_per_task": [s.mean_loss for s in sleeps],
        "sleep_max_feature_change_per_task": [s.max_feature_change for s in sleeps],
        "sleep_max_parameter_change_per_task": [s.max_parameter_change for s in sleeps],
        "sleep_max_loss": max(s.max_loss for s in sleeps),
        "sleep_max_feature_change": max(s.max_feature_change for s in sleeps),
        "sleep_max_parameter_change": max(s.max_parameter_change for s in sleeps),
        "model_parameter_count": count_parameters(model),
        **storage_outputs(tasks, count_parameters(generators[0])),
    }


def finetune_baseline_split_mnist(
    *,
    context: RunContext,
    epochs: int = 5,
    batch_size: int = 128,
    lr: float = 1e-3,
    train_per_class: int | None = None,
    test_per_class: int | None = None,
) -> dict:
    """The script's fine-tuning baseline (§1.7): same features, ONE shared 2-way head, no task id,
    one Adam kept across tasks, cross-entropy on the local label; evaluated on every task."""
    tasks, dataset_files = split_mnist_tasks(context.data_dir, context.device, train_per_class=train_per_class,
                                             test_per_class=test_per_class, seed=context.seed)
    model = SharedHeadNet().to(context.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    rng = context.torch_generator("batch order")
    strategy = FineTuning()
    test_rows, train_rows = [], []
    for task in tasks:
        train_task(model, strategy, task, epochs=epochs, batch_size=batch_size, optimizer=optimizer, generator=rng)
        test_rows.append([accuracy(model, other.x_test, other.y_test) for other in tasks])
        train_rows.append([accuracy(model, other.x_train, other.y_train) for other in tasks])
    return {"dataset_files": dict(dataset_files), "accuracy_matrix": test_rows,
            "train_data_accuracy_matrix": train_rows, "task_test_sizes": [len(task.y_test) for task in tasks]}


def exemplar_replay_split_mnist(
    *,
    context: RunContext,
    epochs: int = 5,
    batch_size: int = 128,
    lr: float = 1e-3,
    exemplars_per_task: int | None = None,
    train_per_class: int | None = None,
    test_per_class: int | None = None,
) -> dict:
    """Fair control (§3.10, §4.3): MyGO's network and heads with task id, features trained, a fresh
    Adam per task, replaying stored images. exemplars_per_task=None matches one generator's fp32
    bytes with uint8 images plus label bytes (109,716 x 4 / 785 = 559 images per task)."""
    tasks, dataset_files = split_mnist_tasks(context.data_dir, context.device, train_per_class=train_per_class,
                                             test_per_class=test_per_class, seed=context.seed)
    model = NeocortexNet().to(context.device)
    for task in tasks:  # heads exist before the optimizers are made; an unused head gets no gradient
        model.add_task_head(task.task_id)
    generator_bytes = count_parameters(Generator()) * FLOAT32_BYTES
    per_task = exemplars_per_task if exemplars_per_task is not None else generator_bytes // (28 * 28 + LABEL_BYTES)
    # its own stream, not the batch order's numbers (which start at the seed)
    strategy = ExemplarReplay(per_task, batch_size, context.torch_generator("exemplar choice", seed_offset=1))
    results = run_stream(model, strategy, tasks, epochs=epochs, batch_size=batch_size,
                         make_optimizer=lambda m, _: torch.optim.Adam(m.parameters(), lr=lr), seed=context.seed,
                         device=context.device, evaluate_untrained=False)
    return {"dataset_files": dict(dataset_files), "accuracy_matrix": results["accuracy_matrix"],
            "exemplars_per_task": per_task, "stored_exemplar_bytes": strategy.stored_images() * (28 * 28 + LABEL_BYTES),
            "generator_bytes_per_task": generator_bytes, "task_test_sizes": [len(task.y_test) for task in tasks]}


AG_NEWS_TRAIN = "ag_news/train.csv"


def wake_sleep_split_ag_news(*, context: RunContext, **params) -> dict:
    """MyGO's NLP run (§2.2) needs AG News train.csv (mhjabreel/CharCnn_Keras data/ag_news_csv/),
    which the data directory does not hold: the run is `not run`, naming the file."""
    path = pathlib.Path(context.data_dir) / AG_NEWS_TRAIN
    if not path.is_file():
        raise DatasetMissing(f"Split AG News: missing {path} (the 120,000-row AG News train.csv that src/test.py "
                             "downloads from raw.githubusercontent.com/mhjabreel/CharCnn_Keras/master/data/"
                             "ag_news_csv/train.csv); no verified copy is available here", [path])
    raise NotImplementedError(f"{path} is present, but the NLP pipeline (spec §1.2, §2.2) is not implemented yet")
