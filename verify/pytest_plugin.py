"""pytest plugin: every ledger entry under claims/ is a test item.

Shaped like pytest-benchmark: command-line options, fixtures, and a terminal summary. Registered
through the ``pytest11`` entry point, so ``pytest claims/`` needs no conftest.

Outcomes (DESIGN.md): each verdict is compared with the baseline (results/baseline.json, the last
verdict measured per entry, device and profile; see verify/baseline.py). The same verdict PASSES
when it is ``reproduced`` or ``measured`` and is an expected failure (xfail, its reason carrying the
numbers) when it is ``not reproduced`` or ``inconclusive``; a different verdict FAILS, naming both;
an entry with no baseline verdict yet is reported as new. ``--update-baseline`` records the verdicts
instead. ``not run`` SKIPS with its reason.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import sqlite3
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import torch

from verify import baseline as baseline_file
from verify import report
from verify.executors import Executor, PoolExecutor, RayExecutor, SequentialExecutor, cpu_oversubscription
from verify.ledger import NO_SOURCES, Entry, LedgerError, default_seeds_dir, load_ledger
from verify.runner import Runner, engine_settings, resolve_device
from verify.store import ResultsStore, canonical_json, merge_verdicts, write_text_atomic
from verify.verdicts import Verdict

DEFAULT_RESULTS = "reports/results.sqlite"
DEFAULT_VERDICTS_JSON = "reports/verdicts.json"
DEFAULT_REPORT_HTML = "reports/index.html"
DEFAULT_BASELINE = "results/baseline.json"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("claims", "continual-learning claims harness")
    group.addoption("--device", choices=("cpu", "cuda", "auto"), default="cpu",
                    help="device the claim protocols run on (default: cpu; auto = cuda when available)")
    group.addoption("--profile", choices=("smoke", "full"), default="smoke",
                    help="smoke: full protocols for 'ci'-tier claims, CI-sized runs for 'full'-tier ones; "
                         "full: every claim with its full protocol (default: smoke)")
    group.addoption("--seeds", type=int, default=None, metavar="N",
                    help="use only the first N of each entry's pre-registered seeds (default: all)")
    group.addoption("--data-dir", default=None,
                    help="dataset folder (default: $CLAIMS_DATA_DIR, else ~/.cache/claims-harness/datasets)")
    group.addoption("--results", default=DEFAULT_RESULTS, help=f"SQLite results store (default: {DEFAULT_RESULTS})")
    group.addoption("--no-cache", action="store_true", default=False,
                    help="re-run every protocol even when the results store holds the same run")
    group.addoption("--verdicts-json", default=DEFAULT_VERDICTS_JSON,
                    help=f"where to write this session's verdicts as JSON (default: {DEFAULT_VERDICTS_JSON})")
    group.addoption("--report-html", default=DEFAULT_REPORT_HTML,
                    help=f"where to write the HTML report (default: {DEFAULT_REPORT_HTML})")
    group.addoption("--plan", action="store_true", default=False,
                    help="print the runs the selected entries still need (with estimated times) and exit")
    group.addoption("--workers", default="1", metavar="N",
                    help="parallel workers for pending runs: a number, or auto (CPU cores; on CUDA, "
                         "workers sharing the GPU) (default: 1, in this process)")
    group.addoption("--executor", choices=("local", "ray"), default="local",
                    help="local: this process or a local process pool (--workers); ray: each run a Ray task "
                         "(needs the [ray] extra) (default: local)")
    group.addoption("--ray-address", default=None, metavar="ADDR",
                    help="Ray cluster to submit to (default: start a local one with --workers CPUs)")
    group.addoption("--threads", type=int, default=None, metavar="N",
                    help="CPU threads per run, part of a run's identity (default: torch's setting divided "
                         "among the workers)")
    group.addoption("--seed-batching", choices=("auto", "on", "off"), default="auto",
                    help="train the seeds of a protocol that supports it in one pass (auto: on CUDA only, "
                         "where it pays) (default: auto)")
    group.addoption("--baseline", default=DEFAULT_BASELINE,
                    help=f"the last measured verdicts each verdict is compared with (default: {DEFAULT_BASELINE})")
    group.addoption("--update-baseline", action="store_true", default=False,
                    help="record this session's verdicts in the baseline instead of failing on a change")
    group.addoption("--no-bundle", action="store_true", default=False,
                    help="leave the reference bundle (results/*.json) out of the HTML report, the time "
                         "estimates and the input-missing list")
    group.addoption("--fetch-data", action="store_true", default=False,
                    help="before running, fetch the datasets the selected entries need into --data-dir "
                         "(downloaded and verified; see python -m verify fetch-data)")


def dataset_marker(name: str) -> str:
    """The marker `-m` selects a dataset by: its name with anything but letters and digits as '_'."""
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gpu: needs a CUDA device")
    config.addinivalue_line("markers", "dataset(name): needs a dataset in the data directory")
    from verify.ledger import TIERS

    for tier in TIERS:
        config.addinivalue_line("markers", f"tier_{tier}: an entry of the {tier} tier (select with -m tier_{tier})")
    from implementations.common.checksums import DATASETS

    for name in DATASETS:
        config.addinivalue_line("markers", f"{dataset_marker(name)}: needs the {name} dataset (select with -m)")
    config.stash[_STATE] = _SessionState(config)
    _check_engine_options(config)
    _check_run_options(config)
    config.addinivalue_line("markers", "xdist_group(name): pytest-xdist sends a group's items to one worker")
    if _is_xdist_controller(config):
        config.pluginmanager.register(_XdistController(config), "claims-xdist-controller")
        if getattr(config.option, "dist", None) == "load":
            # Entries of one experiment share its runs: send them to one worker (their
            # xdist_group), so no two workers compute the same run.
            config.option.dist = "loadgroup"


def _is_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _is_xdist_controller(config: pytest.Config) -> bool:
    """pytest-xdist's coordinating process (-n N): workers run the items, it reports them."""
    return not _is_xdist_worker(config) and bool(getattr(config.option, "numprocesses", None)) and \
        config.pluginmanager.hasplugin("xdist")


def _check_engine_options(config: pytest.Config) -> None:
    """Engine options that cannot work are one usage error before anything runs."""
    workers = config.getoption("workers", "1")
    if workers != "auto" and (not workers.isdigit() or int(workers) < 1):
        raise pytest.UsageError(f"--workers must be a positive number or 'auto', got {workers!r}")
    threads = config.getoption("threads", None)
    if threads is not None and threads < 1:
        raise pytest.UsageError(f"--threads must be at least 1, got {threads}")
    if config.getoption("executor", "local") == "ray":
        try:
            importlib.import_module("ray")
        except ImportError:
            raise pytest.UsageError("--executor ray needs Ray: pip install 'cl-claims-harness[ray]' "
                                    "(or pip install ray)") from None


def _check_run_options(config: pytest.Config) -> None:
    """Run options that cannot work are one usage error before anything runs, not one error per item."""
    seeds = config.getoption("seeds", None)
    if seeds is not None and seeds < 1:
        raise pytest.UsageError(f"--seeds must be at least 1, got {seeds}")
    if config.getoption("device", "cpu") == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError("--device cuda: torch.cuda.is_available() is False here (use --device cpu or auto)")


def _unwritable(path: Path) -> str | None:
    """Why the harness could not write `path`, or None. Files are written through a temporary file
    beside them and renamed, so the folder must take a new file; a store is written in place too."""
    if path.is_dir():
        return "is a folder"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as error:
        return f"cannot write in {path.parent} ({error.strerror or error})"
    if path.exists() and not os.access(path, os.W_OK):
        return "is read-only"
    return None


def _check_output_paths(config: pytest.Config) -> None:
    """Where the session will write, checked once before any item runs (an unwritable store would
    otherwise fail every item, and an unwritable report end the session with a traceback)."""
    options = ["results"] if config.getoption("plan") else ["results", "verdicts_json", "report_html"]
    if config.getoption("update_baseline") and not config.getoption("plan"):
        options.append("baseline")
    state = config.stash[_STATE]
    state.baseline  # a baseline that cannot be read is one usage error before anything runs
    for option in options:
        problem = _unwritable(state._path(option))
        if problem:
            raise pytest.UsageError(f"--{option.replace('_', '-')} {state._path(option)}: {problem}")
    try:
        ResultsStore(state._path("results"))
    except sqlite3.Error as error:  # a file that is not a store, or a locked one
        raise pytest.UsageError(f"--results {state._path('results')}: {error}") from None


@dataclass
class _SessionState:
    """Lazily built per-session objects, so plain unit-test sessions never touch the store."""

    config: pytest.Config
    records: list[dict[str, Any]] = field(default_factory=list)
    new: list[str] = field(default_factory=list)  # entries with no baseline verdict for this device/profile
    changed: list[str] = field(default_factory=list)
    _runner: Runner | None = None
    _baseline: dict[str, dict[str, str]] | None = None

    def collect(self, record: dict[str, Any]) -> str | None:
        """Keep a measured record for the summary; its baseline status (None when not run)."""
        self.records.append(record)
        if record["verdict"] == "not run":
            record["baseline"] = None
            return None
        status, record["baseline"] = baseline_file.compare(record, self.baseline)
        if status == baseline_file.NEW:
            self.new.append(record["claim_id"])
        elif status == baseline_file.CHANGED:
            self.changed.append(record["claim_id"])
        return status

    @property
    def baseline(self) -> dict[str, dict[str, str]]:
        if self._baseline is None:
            try:
                self._baseline = baseline_file.load(self._path("baseline"))
            except baseline_file.BaselineError as error:
                raise pytest.UsageError(str(error)) from None
        return self._baseline

    def _path(self, option: str) -> Path:
        path = Path(self.config.getoption(option))
        return path if path.is_absolute() else Path(self.config.rootpath) / path

    @property
    def runner(self) -> Runner:
        if self._runner is None:
            datasets = importlib.import_module("implementations.common.datasets")
            reporter = self.config.pluginmanager.get_plugin("terminalreporter")
            capture = self.config.pluginmanager.get_plugin("capturemanager")

            def progress(message: str) -> None:
                # Long runs must show progress even while pytest captures the test's output.
                if reporter is None:
                    return
                if capture is None:
                    reporter.write_line(f"[claims] {message}")
                    return
                with capture.global_and_fixture_disabled():
                    reporter.write_line(f"[claims] {message}")

            from verify import bundle

            device = resolve_device(self.config.getoption("device"))
            _, threads, seed_batching = engine_settings(device, self.config.getoption("workers"),
                                                        self.config.getoption("threads"),
                                                        self.config.getoption("seed_batching"))
            self._runner = Runner(
                store=ResultsStore(self._path("results")),
                data_dir=datasets.resolve_data_dir(self.config.getoption("data_dir")),
                device=device,
                profile=self.config.getoption("profile"),
                use_cache=not self.config.getoption("no_cache"),
                seed_limit=self.config.getoption("seeds"),
                progress=progress,
                threads=threads,
                seed_batching=seed_batching,
                reference_walls=[] if self.config.getoption("no_bundle")
                else bundle.reference_wall_times(Path(self.config.rootpath) / "results"),
                reference_inputs_missing=[] if self.config.getoption("no_bundle")
                else bundle.reference_inputs_missing(Path(self.config.rootpath) / "results"),
            )
        return self._runner

    def workers(self, device: str) -> int:
        return engine_settings(device, self.config.getoption("workers"), None, "off")[0]

    def executor(self) -> Executor:
        runner = self.runner
        workers = self.workers(runner.device)
        if self.config.getoption("executor") == "ray":
            return RayExecutor(runner.data_dir, self.config.getoption("ray_address"), local_cpus=workers * runner.threads)
        if workers > 1:
            return PoolExecutor(runner.data_dir, workers)
        return SequentialExecutor(runner.data_dir)


_STATE = pytest.StashKey[_SessionState]()


def _is_ledger(path: Path) -> bool:
    return path.suffix == ".toml" and path.parent.parent.name == "claims"


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if _is_ledger(file_path):
        return LedgerFile.from_parent(parent, path=file_path)
    return None


class LedgerFile(pytest.File):
    def collect(self):
        seeds_dir = default_seeds_dir()
        entries = load_ledger(self.path, seeds_dir)
        # Each finding right after its claim, so the terminal output reads claim by claim.
        claims = [e for e in entries if e.kind == "claim"]
        ordered = []
        for claim in claims:
            ordered.append(claim)
            ordered.extend(e for e in entries if e.kind == "finding" and e.of == claim.id)
        ordered.extend(e for e in entries if e.kind == "finding" and e.of is None)
        for entry in ordered:
            item = ClaimItem.from_parent(self, name=entry.id, entry=entry)
            # Entries that share runs (one experiment, or the same protocol and parameters) go to one
            # xdist worker.
            item.add_marker(pytest.mark.xdist_group(entry.experiment or f"{entry.protocol} {canonical_json(entry.params)}"))
            item.add_marker(getattr(pytest.mark, f"tier_{entry.tier}"))  # -m tier_full: the source's quotes only
            if entry.device == "cuda":
                item.add_marker(pytest.mark.gpu)
            for dataset in entry.datasets:
                item.add_marker(pytest.mark.dataset(dataset))
                item.add_marker(getattr(pytest.mark, dataset_marker(dataset)))  # -m mnist, -m "not dataset"
            yield item

    def repr_failure(self, excinfo):  # a Collector's repr_failure takes no style (pytest >= 8)
        if isinstance(excinfo.value, LedgerError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)


def pytest_collection_finish(session: pytest.Session) -> None:
    config = session.config
    if not any(isinstance(item, ClaimItem) for item in session.items):
        return
    if default_seeds_dir() is None and not _is_xdist_worker(config):  # said once, not per ledger
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"note: {NO_SOURCES}", yellow=True)
    if not config.option.collectonly:
        _check_output_paths(config)


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> bool | None:
    """Plan the selected entries' runs and execute the pending ones before any item reports, so
    that every executor feeds the same store and items only read it. With --plan: print and stop."""
    config = session.config
    entries = [item.entry for item in session.items if isinstance(item, ClaimItem)]
    if not entries or config.option.collectonly or _is_xdist_worker(config):
        return None  # an xdist worker runs what its items need as each one asks (entries arrive one by one)
    state = config.stash[_STATE]
    runner = state.runner
    workers = state.workers(runner.device)
    plan = runner.plan(entries, longest_first=workers > 1 or config.getoption("executor") == "ray")
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if config.getoption("plan"):
        if reporter is not None:
            reporter.write_sep("=", f"claims plan ({runner.device}, profile {runner.profile}, {runner.threads} "
                                    f"thread(s) per run)")
            for line in plan.lines(workers):
                reporter.write_line(line)
        return True
    if config.getoption("fetch_data"):
        _fetch_data(config, entries, runner.data_dir)
    for line in plan.lines(workers)[len(plan.jobs):]:  # the totals (and any note), not one line per job
        runner.progress(line)
    runnable = sum(not job.ends_not_run for job in plan.jobs)
    if runnable and config.getoption("ray_address") is None:  # a cluster's cores are not this machine's
        note = cpu_oversubscription(min(workers, runnable), runner.threads)
        if note is not None:
            runner.progress(note)
    runner.execute_plan(plan, state.executor(), workers)
    return None


def _fetch_data(config: pytest.Config, entries: list[Entry], data_dir: Path) -> None:
    """--fetch-data: fetch every dataset the selected entries name. A file that cannot be fetched is
    one line here, and its entries are then `not run`, naming it, as they would be without the option."""
    from verify import fetch

    names = list(dict.fromkeys(name for entry in entries for name in entry.datasets))
    known = [name for name in names if name in fetch.DATASETS]
    lines = [f"fetch-data: no registered dataset {name!r}" for name in names if name not in known]
    capture = config.pluginmanager.get_plugin("capturemanager")
    if known:  # progress goes to the terminal as it happens, not into a captured buffer
        with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
            try:
                lines += [f"fetch-data: {outcome.line()}" for outcome in fetch.fetch(known, data_dir)]
            except OSError as error:  # the data directory cannot be written
                lines.append(f"fetch-data: {error}")
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    for line in lines if reporter is not None else ():
        reporter.write_line(line)


_RECORD_PROPERTY = "claims_verdict_record"


class _XdistController:
    """Registered on pytest-xdist's controller: collects each worker's verdict record from its test
    reports, so that the controller alone prints the verdict table and writes the verdicts JSON, the
    report and the baseline (workers write runs and verdicts to the store, nothing else)."""

    def __init__(self, config: pytest.Config):
        self.config = config

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call":  # the teardown report carries the item's properties again
            return
        for name, value in getattr(report, "user_properties", ()):
            if name == _RECORD_PROPERTY:
                self.config.stash[_STATE].collect(json.loads(value))


class VerdictChanged(AssertionError):
    """The measured verdict differs from the baseline's (the last one measured and recorded)."""


class ClaimItem(pytest.Item):
    def __init__(self, *, entry: Entry, **kwargs):
        super().__init__(**kwargs)
        self.entry = entry

    def runtest(self) -> None:
        state = self.config.stash[_STATE]
        record = state.runner.evaluate(self.entry)
        status = state.collect(record)
        if _is_xdist_worker(self.config):  # the controller collects it from the report
            self.user_properties.append((_RECORD_PROPERTY, json.dumps(record, sort_keys=True, allow_nan=False)))
        verdict = Verdict(record["verdict"], record["direction"], record["reason"])
        if verdict.status == "not run":
            pytest.skip(f"{self.entry.id}: not run: {verdict.reason}")
        previous = record["baseline"]
        if status == baseline_file.CHANGED:
            if not self.config.getoption("update_baseline"):
                raise VerdictChanged(
                    f"{self.entry.id}: baseline '{previous}', measured '{verdict.label}': {verdict.reason}; "
                    f"per-seed values {record['values']} (seeds {record['seeds']}); if this change is right, "
                    f"record it with --update-baseline")
        if verdict.status in ("inconclusive", "not reproduced"):
            how = "new" if status == baseline_file.NEW else ("recorded now" if status == baseline_file.CHANGED
                                                            else "as in the baseline")
            pytest.xfail(f"{verdict.label} ({how}): {verdict.reason}")

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, VerdictChanged):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, None, f"{self.entry.kind} {self.entry.id}"


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def claims_runner(request: pytest.FixtureRequest) -> Runner:
    """The session's Runner (device, profile, data dir and store from the command line)."""
    return request.config.stash[_STATE].runner


@pytest.fixture(scope="session")
def claims_device(claims_runner: Runner) -> str:
    return claims_runner.device


@pytest.fixture(scope="session")
def claims_data_dir(claims_runner: Runner) -> Path:
    return claims_runner.data_dir


# -- summary -------------------------------------------------------------------------------------


def _format_claimed(record: dict[str, Any]) -> str:
    claimed = record["claimed"]
    if claimed is None:
        return "-"
    comparison = {"at_least": ">= ", "at_most": "<= ", "exact": "== "}.get(record["comparison"], "")
    text = f"{claimed[0]:.4g}-{claimed[1]:.4g}" if isinstance(claimed, list) else f"{claimed:.6g}"
    tolerance = f" ±{record['tolerance']:.2g}" if record["tolerance"] and record["comparison"] == "equal" else ""
    return comparison + text + tolerance


def _format_interval(record: dict[str, Any]) -> str:
    if record["interval"] is None:
        return "-"
    low, high = record["interval"]
    return f"[{low:.4g}, {high:.4g}]"


def summary_rows(records: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    rows = []
    for record in records:
        verdict = report.verdict_label(record)
        measured = "-" if record["mean"] is None else f"{record['mean']:.6g}"
        name = record["claim_id"] if record["kind"] == "claim" else f"  finding {record['claim_id']}"
        rows.append((name, _format_claimed(record), measured, _format_interval(record), f"n={len(record['values'])}", verdict))
    return rows


def _merged_with_previous(path: Path, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """This session's records merged into the verdicts JSON already there, so a `-k` or one-ledger run
    updates its entries instead of dropping every other one. An unreadable old file is replaced."""
    try:
        previous = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return records
    if not isinstance(previous, list) or not all(isinstance(r, dict) and {"claim_id", "device", "torch_version",
                                                                        "profile", "created"} <= set(r) for r in previous):
        return records
    return merge_verdicts([previous, records])


def _with_bundle(config: pytest.Config, store: ResultsStore) -> tuple[list[dict[str, Any]], list[Any]]:
    """The store's verdicts and runs, with the reference bundle's (results/ beside the baseline)."""
    from verify import bundle

    records, runs = bundle.mark_stale(store.verdicts()), list(store.runs())
    if config.getoption("no_bundle"):
        return records, runs
    bundled_records, bundled_runs = bundle.load_bundle(Path(config.rootpath) / "results")
    return merge_verdicts([bundled_records, records]), runs + bundled_runs


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is None or not state.records or _is_xdist_worker(config):
        return
    header = ("claim", "claimed", "measured", "95% interval", "seeds", "verdict")
    rows = [header, *summary_rows(state.records)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    terminalreporter.write_sep("=", f"claims verdicts ({state.runner.device}, profile {state.runner.profile})")
    for index, row in enumerate(rows):
        terminalreporter.write_line("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
        if index == 0:
            terminalreporter.write_line("  ".join("-" * width for width in widths))
    pending = [r for r in state.records if report.verdict_category(r) == report.PENDING]
    if pending:
        terminalreporter.write_line(f"full protocol pending: {len(pending)} entries ran at smoke size only (no verdict, "
                                    f"no number); run them with --profile full")
    for record in state.records:
        if record["verdict"] == "not run" and record not in pending:
            terminalreporter.write_line(f"not run: {record['claim_id']}: {record['reason']}")
    slot = f"{state.runner.device}/{state.runner.profile}"
    updating = config.getoption("update_baseline")
    if state.new and not updating:
        terminalreporter.write_line(f"new: {len(state.new)} entries have no baseline verdict on {slot} yet (not a "
                                    f"failure; record them with --update-baseline): {', '.join(state.new[:8])}"
                                    + (" ..." if len(state.new) > 8 else ""))
    store = state.runner.store
    writes = (
        ("verdicts JSON", lambda: write_text_atomic(
            state._path("verdicts_json"),
            json.dumps(_merged_with_previous(state._path("verdicts_json"), state.records), indent=1, sort_keys=True,
                       allow_nan=False) + "\n")),
        ("HTML report", lambda: report.write_report(*_with_bundle(config, store), state._path("report_html"))),
    )
    if updating:
        writes += (("baseline", lambda: baseline_file.write(
            state._path("baseline"), baseline_file.updated(state.baseline, state.records))),)
        terminalreporter.write_line(f"baseline {slot}: {len(state.changed)} verdicts changed, {len(state.new)} new")
    for label, write in writes:
        # Checked writable before the run; a disk that fills up or a folder that changes since is
        # one line here, and the previous file stays as it was (written through a renamed temporary).
        try:
            written = write()
            size = written.stat().st_size
            shown = f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.0f} kB"
            terminalreporter.write_line(f"{label + ':':<15}{os.path.relpath(written)} ({shown})")
        except (OSError, ValueError) as error:  # ValueError: a bundle file that is not a valid export
            terminalreporter.write_line(f"{label} not written: {error}", red=True)
