"""Executors: run a plan's jobs in this process, in a local process pool, or as Ray tasks.

Every executor calls the same `execute_job` on the same `RunSpec`s, so a run's stored outputs depend
on its identity alone (tested: byte-identical across executors on CPU). Workers only compute; the
coordinating process receives each finished job and writes the store, so a worker that dies loses
only the job it held, which stays pending for the next session.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import multiprocessing
import os
import platform
import threading
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Callable, Protocol

import torch

from verify.planner import ANY_DEVICE, Job, RunSpec, format_seconds
from verify.store import Run, canonical_json, now_iso


class ProtocolOutputError(TypeError):
    """A protocol returned something that is not a JSON-serialisable dict."""


class RunFailed(RuntimeError):
    """A job failed in a worker; carries the worker's traceback as text (exceptions may not pickle).

    `not_run` is copied from the original exception: a missing prerequisite gives a `not run`
    verdict with this message, anything else fails the entries that read the run.
    """

    def __init__(self, message: str, not_run: bool = False):
        super().__init__(message)
        self.not_run = not_run


def resolve_protocol(name: str) -> Callable[..., dict[str, Any]]:
    module_name, function_name = name.split(":", 1)
    module = importlib.import_module(module_name)
    try:
        return getattr(module, function_name)
    except AttributeError:
        raise LookupError(f"protocol {name!r}: module {module_name} has no function {function_name!r}") from None


SEED_BATCHED_MODULE = "seed_batched"  # the companion module of a package's protocols


def seed_batched_module(protocol: str) -> str | None:
    """The module that may hold the seed-batched form of `pkg.module:function`: `pkg.seed_batched`
    beside it (None for a top-level module)."""
    module = protocol.split(":", 1)[0]
    return f"{module.rsplit('.', 1)[0]}.{SEED_BATCHED_MODULE}" if "." in module else None


def seed_batched_form(protocol: str) -> Callable[..., list[dict[str, Any]]] | None:
    """The protocol's seed-batched form (same outputs per seed as the protocol, for several seeds in
    one pass): `FORMS[protocol]` in its companion module (`seed_batched_module`), else None.

    The form lives outside the protocol's own module on purpose: a sequential run's code version is
    the protocol's import closure, which then never contains batched code, so adding or changing a
    batched form leaves every sequential run current (batched runs hash both closures).
    """
    companion = seed_batched_module(protocol)
    if companion is None or importlib.util.find_spec(companion.rsplit(".", 1)[0]) is None:
        return None
    try:
        module = importlib.import_module(companion)
    except ModuleNotFoundError as error:
        if error.name != companion:
            raise
        return None
    form = getattr(module, "FORMS", {}).get(protocol)
    return form if callable(form) else None


def can_batch_seeds(protocol: str) -> bool:
    """Whether the protocol offers a seed-batched form (`seed_batched_form`)."""
    return seed_batched_form(protocol) is not None


def is_device_independent(protocol: str) -> bool:
    """Whether the protocol declares that its outputs do not depend on the device (e.g. pure numpy):
    such runs are keyed with device "any", run once on CPU and shared by every device's verdicts."""
    return getattr(resolve_protocol(protocol), "device_independent", False) is True


def device_name(device: str) -> str:
    """The processor a run's floats come from, as precisely as byte-identity needs: a GPU's name; for
    a CPU its model name, family and model numbers (the microarchitecture) and the vector kernels
    torch dispatches to, e.g. "AMD EPYC (family 25 model 1, AVX2)". The model name alone is not
    enough: two machines that both call themselves "AMD EPYC" round differently, and a long training
    run turns the last bit into other accuracies (seen 2026-12-06)."""
    if device == "cuda":
        return torch.cuda.get_device_name(0)
    fields: dict[str, str] = {}
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if not line.strip():
                break  # the first processor's block describes them all
            name, _, value = line.partition(":")
            fields.setdefault(name.strip(), value.strip())
    model = fields.get("model name") or platform.processor() or platform.machine()
    generation = (f"family {fields['cpu family']} model {fields['model']}, "
                  if "cpu family" in fields and "model" in fields else "")
    return f"{model} ({generation}{torch.backends.cpu.get_cpu_capability()})"


def _check_outputs(protocol: str, outputs: Any) -> dict[str, Any]:
    if not isinstance(outputs, dict):
        raise ProtocolOutputError(f"protocol {protocol} returned {type(outputs).__name__}, not a dict")
    try:
        canonical_json(outputs)
    except (TypeError, ValueError) as error:
        raise ProtocolOutputError(f"protocol {protocol} returned outputs that are not plain JSON: {error}") from None
    return outputs


def execute_job(specs: list[RunSpec], data_dir: Path | str) -> list[Run]:
    """Run one job where this process is: build the first spec's run context and seed from it, call the
    protocol (with the context or `seed, device, data_dir`, whichever it takes; a batched form with
    `seeds, device, data_dir`), wrap the outputs.

    Sets torch's CPU thread count to the specs' (it is part of their identity).
    """
    first = specs[0]
    run_context = importlib.import_module("implementations.common.run_context")
    protocol = resolve_protocol(first.protocol)
    if torch.get_num_threads() != first.threads:
        torch.set_num_threads(first.threads)
    device = "cpu" if first.device == ANY_DEVICE else first.device
    name = device_name(device)
    context = run_context.RunContext(first.seed, device, Path(data_dir))
    context.reseed()
    started = time.perf_counter()
    if first.seed_batched:
        batched = seed_batched_form(first.protocol)
        if batched is None:
            raise LookupError(f"protocol {first.protocol} has no seed-batched form in "
                              f"{seed_batched_module(first.protocol)}.FORMS")
        results = batched(seeds=[spec.seed for spec in specs], device=device, data_dir=Path(data_dir),
                          **first.params)
        if not isinstance(results, list) or len(results) != len(specs):
            raise ProtocolOutputError(f"protocol {first.protocol}: its seed-batched form returned "
                                      f"{type(results).__name__}, not a list of {len(specs)} outputs")
    else:
        results = [run_context.call_protocol(protocol, context, **first.params)]
    share = (time.perf_counter() - started) / len(specs)
    return [Run(spec.key, spec.protocol, spec.params, spec.seed, spec.device, name, spec.torch_version,
                spec.code_version, _check_outputs(spec.protocol, outputs), share, now_iso(), spec.threads,
                spec.seed_batched)
            for spec, outputs in zip(specs, results)]


def _failure(error: BaseException) -> RunFailed:
    if getattr(error, "not_run", False):
        return RunFailed(str(error), not_run=True)
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    return RunFailed(f"{type(error).__name__}: {error}\n--- worker traceback ---\n{text}")


def _execute_in_worker(specs: list[RunSpec], data_dir: str) -> tuple[str, Any]:
    """Never raises: ("ok", [run dicts]) or ("error", RunFailed), so the reply always pickles."""
    try:
        return "ok", [run.as_dict() for run in execute_job(specs, data_dir)]
    except Exception as error:  # noqa: BLE001 - handed to the coordinator, which fails the entries
        return "error", _failure(error)


OnDone = Callable[[Job, list[Run]], None]
OnFailed = Callable[[Job, BaseException], None]


class Executor(Protocol):
    def run(self, jobs: list[Job], on_done: OnDone, on_failed: OnFailed) -> None: ...


@dataclass
class SequentialExecutor:
    """In this process, one job after another; the original exception reaches the failing entry."""

    data_dir: Path

    def run(self, jobs: list[Job], on_done: OnDone, on_failed: OnFailed) -> None:
        for job in jobs:
            try:
                runs = execute_job(job.specs, self.data_dir)
            except Exception as error:  # noqa: BLE001 - recorded; the entries reading the run re-raise it
                on_failed(job, error)
                continue
            on_done(job, runs)


def _exit_with_parent(parent: int, every: float = 2.0) -> None:
    """A worker ends when its coordinator is gone (killed by SIGTERM or SIGKILL, nothing cleaned up)
    instead of computing on as an orphan: checked every `every` seconds in a daemon thread."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)
    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _pool_worker(connection: Connection, data_dir: str, parent: int | None = None) -> None:
    if parent is not None:
        _exit_with_parent(parent)
    while True:
        specs = connection.recv()
        if specs is None:
            return
        connection.send(_execute_in_worker(specs, data_dir))


@dataclass
class PoolExecutor:
    """A local pool of `workers` processes (spawned: a fresh interpreter each, no inherited threads).

    Each worker holds one job at a time through its own pipe, so when a worker dies the coordinator
    knows which job it lost; that job is reported failed and a fresh worker takes its place.
    """

    data_dir: Path
    workers: int
    on_worker_start: Callable[[int], None] | None = None  # pid of each started worker (tests kill one)

    def run(self, jobs: list[Job], on_done: OnDone, on_failed: OnFailed) -> None:
        context = multiprocessing.get_context("spawn")
        queue = list(jobs)
        busy: dict[Connection, tuple[Any, Job | None]] = {}

        def start_worker() -> None:
            ours, theirs = context.Pipe()
            process = context.Process(target=_pool_worker, args=(theirs, str(self.data_dir), os.getpid()), daemon=True)
            process.start()
            theirs.close()
            if self.on_worker_start is not None:
                self.on_worker_start(process.pid)
            busy[ours] = (process, None)
            give_next(ours)

        def give_next(connection: Connection) -> None:
            process, _ = busy[connection]
            job = queue.pop(0) if queue else None
            busy[connection] = (process, job)
            if job is not None:
                connection.send(job.specs)

        for _ in range(min(self.workers, len(queue))):
            start_worker()
        try:
            while any(job is not None for _, job in busy.values()):
                sentinels = {process.sentinel: connection for connection, (process, _) in busy.items()}
                for ready in wait([*busy, *sentinels]):
                    connection = sentinels.get(ready, ready)
                    if connection not in busy:
                        continue
                    process, job = busy[connection]
                    message = None
                    if connection.poll():
                        try:
                            message = connection.recv()
                        except (EOFError, OSError):
                            message = None  # the pipe closed: the worker is gone
                    if message is not None:
                        status, payload = message
                        if status == "ok":
                            on_done(job, [Run(**run) for run in payload])
                        else:
                            on_failed(job, payload)
                        give_next(connection)
                        continue
                    process.join(timeout=5)
                    if process.is_alive():
                        continue  # readable for a reason other than death; its reply comes later
                    del busy[connection]
                    connection.close()
                    if job is not None:
                        on_failed(job, RunFailed(f"worker process {process.pid} died (exit code "
                                                 f"{process.exitcode}) while running {job.describe()}"))
                        if queue:
                            start_worker()
        finally:
            for connection, (process, _) in busy.items():
                try:
                    connection.send(None)
                except OSError:
                    pass  # that worker is already gone
            for connection, (process, _) in busy.items():
                process.join(timeout=10)
                if process.is_alive():
                    process.kill()
                connection.close()


@dataclass
class RayExecutor:
    """Each job a Ray task on a cluster: an existing one at `address`, or a local one started here.

    The package (and datasets under the same `data_dir` path) must be present on every node. A CUDA
    job asks Ray for `gpu_fraction` of a GPU, so several share one; CPU jobs ask for their threads.
    """

    data_dir: Path
    address: str | None
    local_cpus: int
    gpu_fraction: float = 0.25

    def run(self, jobs: list[Job], on_done: OnDone, on_failed: OnFailed) -> None:
        import ray

        started_here = not ray.is_initialized()
        if started_here:
            if self.address:
                ray.init(address=self.address, log_to_driver=False)
            else:
                ray.init(num_cpus=self.local_cpus, num_gpus=torch.cuda.device_count(), include_dashboard=False,
                         log_to_driver=False)
        try:
            remote = ray.remote(_execute_in_worker)
            pending = {}
            for job in jobs:
                first = job.specs[0]
                options = {"num_cpus": first.threads, "max_retries": 0}
                if first.device == "cuda":
                    options["num_gpus"] = self.gpu_fraction
                pending[remote.options(**options).remote(job.specs, str(self.data_dir))] = job
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for reference in ready:
                    job = pending.pop(reference)
                    try:
                        status, payload = ray.get(reference)
                    except ray.exceptions.RayError as error:  # the worker died or the node went away
                        on_failed(job, RunFailed(f"Ray task for {job.describe()} failed: {error}"))
                        continue
                    if status == "ok":
                        on_done(job, [Run(**run) for run in payload])
                    else:
                        on_failed(job, payload)
        finally:
            if started_here:
                ray.shutdown()


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, else the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def cpu_oversubscription(workers: int, threads: int, *, cores: int | None = None,
                         load: float | None = None) -> str | None:
    """A one-line note when the runs about to start want more CPU threads than are free, else None.

    OpenMP threads spin-wait for each other: on oversubscribed cores a run with 2 threads per run was
    measured 10-40 times slower than alone (a 12 s run took 2-8 minutes). `load` is the 1-minute
    load average (default: the machine's), of which one process is this session's own.
    """
    cores = available_cores() if cores is None else cores
    wanted = workers * threads
    fit = f"--threads {max(1, cores // workers)}"
    if wanted > cores:
        return (f"note: {workers} worker(s) x {threads} thread(s) per run = {wanted} threads on {cores} CPU core(s): "
                f"oversubscribed threads spin-wait and can slow runs many times over; {fit} fits "
                f"(the thread count is part of a run's identity)")
    if threads == 1:
        return None
    if load is None:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    others = round(load - 1)
    if others >= 1 and others + wanted > cores:
        return (f"note: about {others} other busy process(es) share the {cores} CPU core(s) with {wanted} threads "
                f"about to run: threads that wait for a busy core spin and can slow runs many times over; "
                f"--threads 1 (or --workers auto) avoids it (the thread count is part of a run's identity)")
    return None


def default_workers(device: str) -> int:
    """`--workers auto`: one worker per CPU core on CPU; on CUDA, workers sharing the one GPU."""
    cores = available_cores()
    if device == "cuda":
        return max(1, min(4, cores))
    return max(1, cores)


class Progress:
    """One line per finished job: i/N, what ran, its time, and the time left (from estimates and pace);
    and, while runs go on for long without one finishing (full-size runs take hours on a CPU), a line
    every `heartbeat` seconds saying so (`beating()`, around the executor's run)."""

    HEARTBEAT = 600.0  # seconds without a line before the next "still running" line
    NOTHING_TIMED = "time unknown until a run finishes"

    def __init__(self, jobs: list[Job], workers: int, write: Callable[[str], None], heartbeat: float | None = None):
        self.heartbeat = self.HEARTBEAT if heartbeat is None else heartbeat
        self._lock = threading.Lock()  # the heartbeat thread and the coordinator write lines
        self._write = write
        self.last_line = time.perf_counter()
        self.total = len(jobs)
        self.workers = max(1, min(workers, self.total or 1))
        # seconds of this session's finished jobs per timing group: the pending jobs of a group the plan
        # could not estimate are timed by them (never by the pace of other groups' runs)
        self._timed: dict[tuple, list[float]] = {}
        self.finished = 0
        self.ran = 0  # jobs that ran to completion; a job refused at once (missing input) says nothing of pace
        self.started = self.last_finish = time.perf_counter()
        # The executors hand jobs out in plan order to the first free worker: the first `workers` start
        # at once, and each finish starts the next. Start times let the time left count what the
        # running jobs have already done (a seed finishing a minute before its twin is not "2h left").
        self._queue = list(jobs)
        self._running: dict[int, tuple[Job, float]] = {}
        for _ in range(self.workers):
            self._start_next(self.started)

    def _start_next(self, now: float) -> None:
        if self._queue:
            job = self._queue.pop(0)
            self._running[id(job)] = (job, now)

    def _estimate(self, job: Job) -> float | None:
        """The plan's estimate, else the mean time of this session's finished jobs of its timing group."""
        if job.estimate is not None:
            return job.estimate
        times = self._timed.get(job.timing_group)
        return sum(times) / len(times) if times else None

    def _pending(self) -> list[Job]:
        """Jobs not finished that take time: the queued and the running, less those whose input is missing."""
        return [job for job in [*(job for job, _ in self._running.values()), *self._queue] if not job.ends_not_run]

    def _wall_left(self, now: float) -> float:
        """Estimated wall time left of the jobs with an estimate: each running job's estimate less its
        time so far (none below 0), then the queued jobs in order, each to the worker that frees first.
        A job whose input is missing ends at once: it counts as no time, known."""
        loads = sorted(max(0.0, (self._estimate(job) or 0.0) - (now - start))
                       for job, start in self._running.values() if not job.ends_not_run)
        loads += [0.0] * max(0, self.workers - len(loads))
        for job in self._queue:
            if not job.ends_not_run:
                loads[loads.index(min(loads))] += self._estimate(job) or 0.0
        return max(loads, default=0.0)

    def _time_left(self, now: float, past_estimate: str) -> str:
        """The time left as far as known: the estimated jobs' wall time, plus how many jobs are of
        unknown length (a group none of whose jobs has finished, with no stored time)."""
        pending = self._pending()
        if not pending:
            return "the rest end at once: their input is missing"
        unknown = sum(self._estimate(job) is None for job in pending)
        if unknown < len(pending):
            wall = self._wall_left(now)
            known = f"~{format_seconds(wall)} left" if wall > 0 else past_estimate
            return known if unknown == 0 else f"{known} + {unknown} run(s) of unknown length"
        if self.ran == 0:
            return self.NOTHING_TIMED
        return f"{unknown} run(s) of unknown length left"

    def write(self, line: str) -> None:
        with self._lock:
            self._write(line)
            self.last_line = time.perf_counter()

    def still_running(self) -> str:
        """The heartbeat's line: what is done, how long it has been, and the time left as far as known
        (the estimated runs' wall time, and how many runs are of unknown length)."""
        now = time.perf_counter()
        elapsed, since = now - self.started, now - self.last_finish
        eta = self._time_left(now, "running past the estimate")
        return (f"[{self.finished}/{self.total}] still running after {format_seconds(elapsed)}, "
                f"{format_seconds(since)} since the last run finished ({eta})")

    @contextlib.contextmanager
    def beating(self):
        """While the block runs, a "still running" line whenever `heartbeat` seconds pass without a line."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(min(self.heartbeat, max(0.05, self.last_line + self.heartbeat - time.perf_counter()))):
                if time.perf_counter() - self.last_line >= self.heartbeat and self.finished < self.total:
                    self.write(self.still_running())

        thread = threading.Thread(target=beat, name="claims-heartbeat", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join()

    def done(self, job: Job, outcome: str, seconds: float | None = None) -> None:
        self.finished += 1
        now = self.last_finish = time.perf_counter()
        self.ran += seconds is not None
        if self._running.pop(id(job), None) is None and job in self._queue:  # an executor's own order
            self._queue.remove(job)
        else:
            self._start_next(now)
        if seconds is not None and job.estimate is None and not job.ends_not_run:
            # the plan estimates a whole group alike: only a group it could not estimate learns here
            self._timed.setdefault(job.timing_group, []).append(seconds)
        left = self.total - self.finished
        if left == 0:
            eta = f"all done in {format_seconds(now - self.started)}"
        else:
            eta = self._time_left(now, "the rest running past the estimate")
            if eta == self.NOTHING_TIMED:
                eta = f"{left} left, {eta}"
        took = "" if seconds is None else f" in {format_seconds(seconds)}"
        self.write(f"[{self.finished}/{self.total}] {job.describe()}: {outcome}{took} ({eta})")
