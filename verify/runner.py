"""Plans and executes a selection's protocol runs, then measures each entry and gives its verdict.

Data flows one way: entries -> plan (the unique runs not yet stored) -> executor (in process, a
local pool or Ray) -> runs in the store -> per-seed metric values -> summary and verdict -> verdict
record in the store. Verdicts read the store only, so every executor gives the same verdicts.

A protocol is resolved from its ledger name ("package.module:function") at run time, so this
module never imports a system under test.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import platform
import subprocess
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from verify import metrics
from verify.executors import (Executor, Progress, SequentialExecutor, can_batch_seeds, default_workers,
                              device_name, is_device_independent, seed_batched_module)
from verify.ledger import Entry, default_seeds_dir, document_provenance
from verify.planner import ANY_DEVICE, Job, Plan, RunSpec, build_plan
from verify.store import ResultsStore, Run, now_iso
from verify.verdicts import DEVICE, MISSING, PENDING, Judgement, Verdict, judge, summarize

IMPLEMENTATIONS_DIR = Path(__file__).resolve().parent.parent / "implementations"
# A full-tier experiment at smoke size only shows that its protocol runs (it never gives a verdict):
# two seeds show that, and that the seeds differ.
SMOKE_SEEDS = 2


def resolve_device(requested: str) -> str:
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was requested but torch.cuda.is_available() is False")
    if requested not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {requested!r}; use cpu, cuda or auto")
    return requested


def engine_settings(device: str, workers: str, threads: int | None, seed_batching: str) -> tuple[int, int, bool]:
    """(workers, CPU threads per run, seed batching on) from the command line's --workers (a number or
    auto), --threads (None: torch's threads divided among the workers) and --seed-batching (auto: CUDA)."""
    count = default_workers(device) if workers == "auto" else int(workers)
    per_run = threads or max(1, torch.get_num_threads() // count)
    return count, per_run, seed_batching == "on" or (seed_batching == "auto" and device == "cuda")


def _module_file(name: str) -> Path | None:
    """The source file of a module under implementations/ (a package's __init__.py), or None."""
    parts = name.split(".")
    if parts[0] != IMPLEMENTATIONS_DIR.name:
        return None
    base = IMPLEMENTATIONS_DIR.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_modules(path: Path, name: str) -> set[str]:
    """Every module under implementations/ that the file imports (at any depth of the file), with the
    packages that contain it: `from a.b import c` names a.b and, where c is a module, a.b.c."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = name.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    modules = {module for module in found if _module_file(module) is not None}
    for module in list(modules):  # importing a.b.c runs a/__init__ and a/b/__init__ too
        parts = module.split(".")
        modules.update(".".join(parts[:i]) for i in range(2, len(parts)) if _module_file(".".join(parts[:i])))
    return modules


@lru_cache(maxsize=None)
def code_version(protocol: str, seed_batched: bool = False) -> str:
    """SHA-256 of the source the protocol can reach: its module and every module under
    implementations/ it imports, transitively (found by reading the import statements). A seed-batched
    run executes the companion module's form too (`executors.seed_batched_module`): its version
    covers both closures, while a sequential run's never depends on batched code.

    Content-addressed rather than a git commit, so a cached run is invalidated exactly when the code
    it ran changes (and only then: an edit to another system or an unused shared module leaves it
    current), and an uncommitted edit is never mistaken for the committed code. A protocol outside
    implementations/ (a test's toy module) is hashed as its own file.
    """
    roots = [protocol.split(":", 1)[0]]
    if seed_batched:
        companion = seed_batched_module(protocol)
        if companion is None:
            raise LookupError(f"protocol {protocol!r} is a top-level module: it has no seed-batched form")
        roots.append(companion)
    pending, files = [".".join(root.split(".")[:i]) for root in roots for i in range(1, root.count(".") + 2)], {}
    while pending:
        name = pending.pop()
        if name in files:
            continue
        path = _module_file(name)
        if path is None and name in roots:
            try:
                spec = importlib.util.find_spec(name)
            except ModuleNotFoundError:  # its package cannot be imported
                spec = None
            if spec is None or spec.origin is None:
                raise LookupError(f"protocol module {name!r} cannot be found")
            path = Path(spec.origin)
        if path is None:  # a parent package outside implementations/ (a test's toy module)
            continue
        files[name] = path
        pending.extend(_imported_modules(path, name) - files.keys())
    digest = hashlib.sha256()
    for name in sorted(files):
        path = files[name]
        label = path.relative_to(IMPLEMENTATIONS_DIR) if path.is_relative_to(IMPLEMENTATIONS_DIR) else path.name
        digest.update(str(label).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


@lru_cache(maxsize=None)
def run_environment() -> dict[str, str | None]:
    """Python, platform and the working tree's git commit, recorded beside each verdict for the report.

    The commit is informational (code_version identifies the code a run executed): None where git
    is absent or this is not a checkout.
    """
    try:
        completed = subprocess.run(["git", "rev-parse", "HEAD"], cwd=IMPLEMENTATIONS_DIR.parent, capture_output=True,
                                   text=True, timeout=10, check=False)
        commit = completed.stdout.strip() if completed.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"python": platform.python_version(), "platform": platform.platform(), "git_commit": commit or None}


class NotStored(LookupError):
    """A run a read-only Runner needs is not in its store: the entry's protocol is pending there."""

    not_run = True


@dataclass
class Runner:
    """Evaluates ledger entries on one device, reusing finished runs from the store.

    threads: CPU threads each run uses (part of its identity; default torch's current setting).
    seed_batching: train the seeds of a protocol that offers it together (its own identity).
    """

    store: ResultsStore
    data_dir: Path
    device: str = "cpu"
    profile: str = "smoke"
    use_cache: bool = True
    seed_limit: int | None = None
    progress: Callable[[str], None] = print
    torch_version: str = field(default_factory=lambda: torch.__version__)
    threads: int = field(default_factory=torch.get_num_threads)
    seed_batching: bool = False
    execute: bool = True  # False: verdicts from stored runs only (a bundle's runs, another machine's)
    device_name: str | None = None  # default: this machine's name for `device`
    # protocol -> the code version its runs are keyed with (default: the code here). A bundle's
    # verdicts are recomputed under the code version its runs recorded, current or stale.
    code_versions: dict[str, str] = field(default_factory=dict)
    # protocol -> whether its runs are seed-batched (default: seed_batching and a batched form exists).
    # A bundle's runs are read under the identity they were recorded with, even if the protocol has
    # gained (or lost) a batched form since.
    seed_batched_runs: dict[str, bool] = field(default_factory=dict)
    # (protocol, params, device, wall seconds, seed-batched) of the reference bundle's runs: estimates for a store
    # that has none of its own yet
    reference_walls: list[tuple] = field(default_factory=list)
    # the reference bundle's "input missing" records: jobs known to end `not run` at once
    reference_inputs_missing: list[dict[str, Any]] = field(default_factory=list)
    executed: set[str] = field(default_factory=set)  # keys run in this session (--no-cache runs each once)
    failures: dict[str, BaseException] = field(default_factory=dict)  # key -> why its run failed here

    def __post_init__(self) -> None:
        if self.device_name is None:
            self.device_name = device_name(self.device)

    def code_version(self, protocol: str, seed_batched: bool = False) -> str:
        return self.code_versions.get(protocol) or code_version(protocol, seed_batched)

    def seeds_for(self, entry: Entry) -> tuple[int, ...]:
        seeds = entry.seeds if entry.runs_full_protocol(self.profile) else entry.seeds[:SMOKE_SEEDS]
        return seeds if self.seed_limit is None else seeds[: self.seed_limit]

    def skip_reason(self, entry: Entry) -> str | None:
        """Why the entry needs no run on this device and profile, or None."""
        if entry.device == "cuda" and self.device != "cuda" and self.profile != "full":
            return "needs a CUDA device: run with --device cuda, or on CPU with --profile full"
        return None

    def batched(self, entry: Entry) -> bool:
        """Whether this runner trains the entry's seeds together."""
        if entry.protocol in self.seed_batched_runs:
            return self.seed_batched_runs[entry.protocol]
        return self.seed_batching and can_batch_seeds(entry.protocol)

    def spec(self, entry: Entry, seed: int) -> RunSpec:
        batched = self.batched(entry)
        device = ANY_DEVICE if is_device_independent(entry.protocol) else self.device
        return RunSpec(entry.protocol, entry.params_for(self.profile), seed, device, self.torch_version,
                       self.code_version(entry.protocol, batched), self.threads, batched)

    def plan(self, entries: Iterable[Entry], *, longest_first: bool = False) -> Plan:
        """The runs these entries need that are neither stored (unless --no-cache) nor run this session."""
        from verify.bundle import inputs_missing
        from verify.fetch import missing_files

        entries = list(entries)
        needs, missing, absent = [], {}, {}
        for entry in entries:
            reason = self.skip_reason(entry)
            needs.append((entry.id, reason if reason else [self.spec(entry, seed) for seed in self.seeds_for(entry)]))
            if entry.datasets not in absent:
                absent[entry.datasets] = missing_files(entry.datasets, self.data_dir)
            missing[entry.id] = absent[entry.datasets]
        # what a session (this store's, or the one that built the reference bundle) found absent
        known = inputs_missing(entries, self.store.inputs_missing() + self.reference_inputs_missing,
                               device=self.device, profile=self.profile, data_dir=self.data_dir)
        return build_plan(needs, self.store, skip_stored=self.use_cache, done=self.executed | set(self.failures),
                          longest_first=longest_first, reference_walls=self.reference_walls,
                          reference_other_params=self.profile == "full", missing=missing,
                          unavailable={entry_id: record["reason"] for entry_id, record in known.items()})

    def execute_plan(self, plan: Plan, executor: Executor | None = None, workers: int = 1) -> None:
        """Run the plan's jobs; the store receives each run as its job finishes (so a killed session
        keeps every finished run), failures are kept for the entries that read them."""
        if not plan.jobs:
            return
        executor = executor or SequentialExecutor(self.data_dir)
        progress = Progress(plan.jobs, workers, self.progress)

        def on_done(job: Job, runs: list[Run]) -> None:
            for run in runs:
                self.store.put_run(run)
                self.executed.add(run.run_key)
            progress.done(job, "done", sum(run.wall_seconds for run in runs))

        def on_failed(job: Job, error: BaseException) -> None:
            for spec in job.specs:
                self.failures[spec.key] = error
            first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
            progress.done(job, ("not run: " if getattr(error, "not_run", False) else "FAILED: ") + first_line)

        with progress.beating():  # a line every 10 minutes while no run finishes
            executor.run(plan.jobs, on_done, on_failed)

    def run(self, entry: Entry, seed: int) -> Run:
        """One protocol run, read from the store; executed here first when it is not there yet."""
        spec = self.spec(entry, seed)
        if spec.key not in self.failures and (spec.key in self.executed or self.use_cache):
            stored = self.store.get_run(spec.key)
            if stored is not None:
                return stored
        if spec.key not in self.failures and not self.execute:
            raise NotStored(f"no stored run of {spec.describe()} (runs are read, not executed, here)")
        if spec.key not in self.failures:
            self.execute_plan(self.plan([entry]))
        if spec.key in self.failures:
            raise self.failures[spec.key]
        run = self.store.get_run(spec.key)
        if run is None:
            raise LookupError(f"run {spec.describe()} of {entry.id} is neither stored nor failed")
        return run

    def _record(self, entry: Entry, verdict: Verdict, seeds: tuple[int, ...], runs: list[Run], values: list[float],
                judgement: Judgement | None = None, not_run: str | None = None) -> dict[str, Any]:
        summary = None if judgement is None else judgement.summary
        prediction = None if judgement is None or judgement.prediction is None else list(judgement.prediction)
        return {
            "claim_id": entry.id,
            "kind": entry.kind,
            "of": entry.of,
            "system": entry.system,
            "title": entry.title,
            "quote": entry.quote,
            "source": None if entry.source is None else {**entry.source.__dict__,
                                                         **(document_provenance(entry, default_seeds_dir()) or {})},
            "claim_kind": entry.claim_kind,
            "experiment": entry.experiment,
            "metric": entry.metric,
            "metric_args": entry.metric_args,
            "claimed": list(entry.claimed) if isinstance(entry.claimed, tuple) else entry.claimed,
            "comparison": entry.comparison,
            "tolerance": entry.tolerance,
            "tolerance_origin": entry.tolerance_origin,
            "protocol": entry.protocol,
            "params": entry.params_for(self.profile),
            "deviation": entry.deviation,
            "table": None if entry.table is None else dict(entry.table.__dict__),
            "tier": entry.tier,
            "profile": self.profile,
            "verdict": verdict.status,
            "not_run": not_run if verdict.status == "not run" else None,
            "direction": verdict.direction,
            "reason": verdict.reason,
            "seeds": list(seeds),
            "values": values,
            "mean": None if summary is None else summary.mean,
            "interval": None if summary is None else list(summary.interval),
            "interval_method": None if summary is None else summary.method,
            "prediction_interval": prediction,
            "device": self.device,
            "device_name": self.device_name,
            "torch_version": self.torch_version,
            "code_version": self.code_version(entry.protocol, self.batched(entry)),
            "environment": dict(run_environment()),
            "run_keys": [run.run_key for run in runs],
            "device_independent": is_device_independent(entry.protocol),
            "created": now_iso(),
        }

    def evaluate(self, entry: Entry) -> dict[str, Any]:
        """Run every seed of the entry, measure, decide, store and return the verdict record.

        An entry whose full protocol did not run here (a full-tier entry under the smoke profile) is
        `not run`, "full protocol pending", and carries no measured number: its smoke runs show only
        that the protocol runs."""
        seeds = self.seeds_for(entry)
        reason = self.skip_reason(entry)
        if reason is not None:
            return self._store(self._record(entry, Verdict("not run", None, reason), seeds, [], [], not_run=DEVICE))
        runs: list[Run] = []
        for seed in seeds:
            try:
                runs.append(self.run(entry, seed))
            except Exception as error:  # noqa: BLE001 - only prerequisites marked not_run are caught
                if not getattr(error, "not_run", False):
                    raise
                return self._store(self._record(entry, Verdict("not run", None, str(error)), seeds, runs, [],
                                                not_run=PENDING if isinstance(error, NotStored) else MISSING))
        values = [metrics.compute(entry.metric, run.outputs, entry.metric_args) for run in runs]
        if not entry.runs_full_protocol(self.profile):
            verdict = Verdict("not run", None, f"{PENDING}: tier 'full' ran at smoke size only here "
                                               f"({len(runs)} seed(s), no verdict); run with --profile full")
            return self._store(self._record(entry, verdict, seeds, runs, [], not_run=PENDING))
        if entry.claimed is None:
            summary = summarize(values, entry.interval)
            verdict = Verdict("measured", None, f"mean {summary.mean:.6g}, 95% interval "
                              f"[{summary.interval[0]:.6g}, {summary.interval[1]:.6g}] over {summary.n} seed(s)")
            judgement = Judgement(summary, verdict)
        else:
            judgement = judge(values, entry.claimed, entry.comparison, entry.tolerance, entry.claim_kind, seeds,
                              entry.interval)
        return self._store(self._record(entry, judgement.verdict, seeds, runs, values, judgement))

    def _store(self, record: dict[str, Any]) -> dict[str, Any]:
        self.store.put_verdict(record)
        return record
