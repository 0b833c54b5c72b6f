"""The reference bundle: full-protocol runs committed under results/, their verdicts, and their audit.

A bundle file is a results export (docs/CONTRACTS.md) holding one device's full-profile runs and the
verdict of every full-profile entry recomputed from those runs by this code (`build`). The report
and the summary merge the bundle by default; a bundled verdict whose protocol's code has changed
since is marked stale (`mark_stale`). `audit` checks a bundle: every run's key against its identity,
every verdict against one recomputed from the bundled outputs, and a sample of CPU runs re-executed
here, which must give byte-identical outputs.
"""

from __future__ import annotations

import functools
import hashlib
import re
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from verify.ledger import Entry
from verify.planner import ANY_DEVICE, run_key
from verify.store import EXPORT_FORMAT, ResultsStore, Run, canonical_json, is_timing_output, now_iso, read_export
from verify.verdicts import MISSING, PENDING

BUNDLE_DIR = Path(__file__).resolve().parent.parent / "results"
BASELINE_NAME = "baseline.json"
# What a bundled verdict must agree on with the one recomputed from its runs: the claim as the
# ledger states it now, the runs read and what was measured and decided. (Titles, quotes and
# provenance come from the ledger and the archived documents, and may be read differently where
# those are absent; when and where a verdict was computed says nothing about it.)
_AUDITED = ("claim_id", "device", "profile", "claim_kind", "metric", "metric_args", "claimed", "comparison",
            "tolerance", "protocol", "params", "seeds", "run_keys", "values", "mean", "interval", "interval_method",
            "prediction_interval", "verdict", "direction", "not_run", "code_version", "torch_version")


class BundleError(ValueError):
    """A bundle that cannot be built or does not pass its audit (one line per problem)."""


def bundle_files(directory: Path = BUNDLE_DIR) -> list[Path]:
    """The bundle's export files (every *.json under results/ but the baseline)."""
    if not directory.is_dir():
        return []
    return sorted(path for path in directory.glob("*.json") if path.name != BASELINE_NAME)


@dataclass(frozen=True)
class Identity:
    """What the runs of one device in a bundle share: a verdict is recomputed under this identity."""

    device: str
    device_name: str
    torch_version: str
    threads: int
    seed_batched: bool

    @classmethod
    def of(cls, runs: Iterable[Run], device: str) -> Identity:
        own = [run for run in runs if run.device == device] or [run for run in runs if run.device == ANY_DEVICE]
        if not own:
            raise BundleError(f"no {device} runs to build a bundle from")
        # Processors may differ between runs (each run keeps its own name, and the audit re-runs a run
        # on its own processor only); torch versions and thread counts may not.
        values = {"device_name": "; ".join(sorted({run.device_name for run in own}))}
        for name in ("torch_version", "threads"):
            counts = Counter(getattr(run, name) for run in own)
            if len(counts) > 1:
                listed = ", ".join(f"{value} ({count} runs)" for value, count in counts.most_common())
                raise BundleError(f"the {device} runs mix {name.replace('_', ' ')}s: {listed}; build one bundle "
                                  f"per {name.replace('_', ' ')}")
            values[name] = next(iter(counts))
        return cls(device, values["device_name"], values["torch_version"], values["threads"] or 1,
                   any(run.seed_batched for run in own))


def _runner(store: ResultsStore, identity: Identity, directory: Path, runs: list[Run]):
    from verify.runner import Runner  # the runner imports torch; the bundle's readers need not

    versions: dict[str, set[str]] = {}
    batched: dict[str, set[bool]] = {}
    for run in runs:
        versions.setdefault(run.protocol, set()).add(run.code_version)
        batched.setdefault(run.protocol, set()).add(run.seed_batched)
    mixed = sorted(protocol for protocol, found in versions.items() if len(found) > 1)
    if mixed:
        raise BundleError(f"the runs of {mixed[0]} were recorded by {len(versions[mixed[0]])} code versions; "
                          f"a bundle holds one per protocol")
    return Runner(store, directory, device=identity.device, profile="full", execute=False,
                  torch_version=identity.torch_version, threads=identity.threads,
                  seed_batching=identity.seed_batched, device_name=identity.device_name,
                  code_versions={protocol: found.pop() for protocol, found in versions.items()},
                  # each protocol's runs as they were recorded: seed-batched or not (a set of both
                  # reads the batched ones, the identity a seed-batching session gives them)
                  seed_batched_runs={protocol: True in found for protocol, found in batched.items()},
                  progress=lambda message: None)


def recompute(entries: Iterable[Entry], runs: list[Run], identity: Identity) -> list[dict[str, Any]]:
    """The full-profile verdict of every entry, read from `runs` only (nothing executes), under the
    code version those runs recorded: an entry whose runs are not all there is `not run`, "full
    protocol pending"."""
    with tempfile.TemporaryDirectory() as scratch:
        store = ResultsStore(Path(scratch) / "bundle.sqlite")
        for run in runs:
            store.put_run(run)
        runner = _runner(store, identity, Path(scratch), runs)
        records = [runner.evaluate(entry) for entry in entries]
    # A recomputed verdict is as of the newest run it reads (the bundle's newest run where it reads
    # none), not the moment of the rebuild: the same runs give the same records, and adding one
    # table's runs leaves every other verdict's lines of the bundle as they were.
    created = {run.run_key: run.created for run in runs}
    processors = {run.run_key: run.device_name for run in runs}
    as_of = max(created.values(), default=None)
    for record in records:
        read = sorted({processors[key] for key in record.get("run_keys") or () if key in processors})
        record["device_name"] = "; ".join(read) or identity.device_name  # the processors of the runs it read
        record["environment"] = {"python": None, "platform": None, "git_commit": None,
                                 "note": f"recomputed from bundled runs measured on {record['device_name']}"}
        stamps = [created[key] for key in record.get("run_keys") or () if key in created]
        record["created"] = max(stamps, default=as_of or record["created"])
    return records


def inputs_missing(entries: Iterable[Entry], records: Iterable[dict[str, Any]], *, device: str, profile: str,
                   data_dir: Path | None) -> dict[str, dict[str, Any]]:
    """entry id -> the newest stored `not run` record that found an input of the entry absent
    ("input missing"), made on `device` (any device, for a device-independent protocol) by the
    entry's protocol with the parameters `profile` gives it. A record is passed over where every file
    of the datasets the entry declares is present in `data_dir` now (its session looked elsewhere)."""
    from verify.fetch import missing_files

    by_id = {entry.id: entry for entry in entries}
    found: dict[str, dict[str, Any]] = {}
    for record in records:
        entry = by_id.get(record.get("claim_id"))
        if (entry is None or record.get("verdict") != "not run" or record.get("not_run") != MISSING
                or (record.get("device") != device and not record.get("device_independent"))
                or record.get("protocol") != entry.protocol
                or canonical_json(record.get("params")) != canonical_json(entry.params_for(profile))):
            continue
        if entry.datasets and data_dir is not None and not missing_files(entry.datasets, data_dir):
            continue
        if entry.id not in found or record["created"] > found[entry.id]["created"]:
            found[entry.id] = record
    return found


def _split_where_mixed(runs: list[Run]) -> tuple[list[Run], list[Run]]:
    """(kept, replaced): of a protocol whose runs were recorded by several code versions, the runs of
    the code here are kept and the others replaced: a protocol re-run after a change, built together
    with the bundle that held its stale runs, replaces them. Several versions none of which is current
    are all kept, for the build to refuse."""
    from verify.runner import code_version

    versions: dict[str, set[str]] = {}
    for run in runs:
        versions.setdefault(run.protocol, set()).add(run.code_version)
    mixed = {protocol for protocol, found in versions.items() if len(found) > 1}
    if not mixed:
        return runs, []

    def current(run: Run) -> str | None:
        try:
            return code_version(run.protocol, run.seed_batched)
        except (LookupError, ImportError, SyntaxError, ValueError):
            return None
    replacing = {protocol for protocol in mixed
                 if any(run.code_version == current(run) for run in runs if run.protocol == protocol)}
    kept = [run for run in runs if run.protocol not in replacing or run.code_version == current(run)]
    kept_keys = {run.run_key for run in kept}
    return kept, [run for run in runs if run.run_key not in kept_keys]


def _full_profile_runs(entries: list[Entry], runs: list[Run]) -> list[Run]:
    """The runs of the entries' full-profile parameters, each once (stores of one lease may share runs:
    each imported the bundle)."""
    wanted = {(entry.protocol, canonical_json(entry.params_for("full"))) for entry in entries}
    unique = {run.run_key: run for run in runs}
    return [run for run in unique.values() if (run.protocol, canonical_json(run.params)) in wanted]


def replacements(entries: list[Entry], runs: list[Run]) -> list[str]:
    """One line per protocol whose stale runs a build from `runs` replaces: how many, how many of them
    have a re-run with the same outputs (clock readings aside) and which seeds' outputs moved, and how
    many current runs replace nothing. A twin is the same run but for the code version."""
    kept, replaced = _split_where_mixed(_full_profile_runs(entries, runs))

    def twin(run: Run) -> tuple:
        return (run.protocol, canonical_json(run.params), run.seed, run.device, run.torch_version, run.threads,
                run.seed_batched)
    current = {twin(run): run for run in kept}
    lines = []
    for protocol in dict.fromkeys(sorted(run.protocol for run in replaced)):
        stale = [run for run in replaced if run.protocol == protocol]
        moved = []
        for run in sorted(stale, key=lambda run: run.seed):
            rerun = current.get(twin(run))
            if rerun is not None and deterministic_outputs(rerun.outputs) != deterministic_outputs(run.outputs):
                names = sorted(name for name in {*run.outputs, *rerun.outputs} if not is_timing_output(name)
                               and canonical_json(run.outputs.get(name)) != canonical_json(rerun.outputs.get(name)))
                # on another processor the floats may move with no code change at all: say so
                where = (f" (recorded on {run.device_name}, re-run on {rerun.device_name})"
                         if rerun.device_name != run.device_name else "")
                moved.append(f"seed {run.seed}: {', '.join(names)}{where}")
        twins = sum(twin(run) in current for run in stale)
        line = f"{protocol}: {len(stale)} stale run(s) replaced, {twins - len(moved)} with the same outputs"
        if moved:
            line += f", {len(moved)} with other outputs ({'; '.join(moved)})"
        if twins < len(stale):
            line += f", {len(stale) - twins} with no re-run"
        stale_twins = {twin(run) for run in stale}
        new = sum(run.protocol == protocol and twin(run) not in stale_twins for run in kept)
        lines.append(line + (f"; {new} run(s) new" if new else ""))
    return lines


def build(entries: list[Entry], runs: list[Run], device: str, *, not_run_records: Iterable[dict[str, Any]] = (),
          data_dir: Path | None = None) -> dict[str, Any]:
    """A bundle document for `device`: the verdicts recomputed from `runs` and the runs they read.

    not_run_records: verdict records of the sessions that made the runs (stores, or an earlier bundle).
    An entry none of whose runs are here, and for which one of them stored "input missing" (a dataset
    file, model weights, a script that exists nowhere), keeps that reason, with `data_dir` written as
    <data dir>, instead of "full protocol pending": the bundle tells what waits for compute from what
    cannot run where it was built."""
    # Every full-profile run is kept, also those of an entry still short of seeds: a later lease
    # imports the bundle and runs only what is missing.
    full, _ = _split_where_mixed(_full_profile_runs(entries, runs))
    identity = Identity.of(full, device)
    candidates = [run for run in full if run.device in (device, ANY_DEVICE) and run.torch_version == identity.torch_version]
    records = recompute(entries, candidates, identity)
    absent = inputs_missing(entries, not_run_records, device=device, profile="full", data_dir=data_dir)
    read = {run.run_key for run in candidates}
    for record in records:
        stored = absent.get(record["claim_id"])
        if stored is None or record["not_run"] != PENDING or read & set(record.get("run_keys") or ()):
            continue
        reason = stored["reason"]
        for root in dict.fromkeys((Path(data_dir), Path(data_dir).resolve()) if data_dir is not None else ()):
            reason = reason.replace(f"{root}/", "<data dir>/")
        record.update(not_run=MISSING, reason=reason, created=stored["created"])
    return {
        "format": EXPORT_FORMAT,
        "exported": now_iso(),
        "identity": identity.__dict__,
        "runs": sorted((run.as_dict() for run in candidates), key=lambda run: run["run_key"]),
        "verdicts": sorted(records, key=lambda record: (record["system"], record["claim_id"])),
    }


def mark_stale(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies of the records, each with `stale` set when its protocol's code differs from the code here
    (a verdict measured by other code is shown as such, never as current)."""
    from verify.runner import code_version

    marked = []
    for record in records:
        current = set()
        for seed_batched in (False, True):  # a record measured from seed-batched runs carries their version
            try:
                current.add(code_version(record["protocol"], seed_batched))
            except (LookupError, ImportError, SyntaxError, ValueError):
                pass
        # Only a measurement can be stale; `not run` says nothing measured, by any code.
        marked.append({**record, "stale": record["verdict"] != "not run" and record["code_version"] not in current})
    return marked


def load_bundle(directory: Path = BUNDLE_DIR) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(verdict records marked stale or current, runs) of every bundle file."""
    records, runs = [], []
    for path in bundle_files(directory):
        document = read_export(path)
        records.extend(mark_stale(document["verdicts"]))
        runs.extend(document["runs"])
    return records, runs


@functools.lru_cache(maxsize=8)
def _read_bundle_file(path: Path, mtime_ns: int, size: int) -> dict[str, Any]:
    return read_export(path)  # keyed by the file's state: the planner reads each file once per change


def _reference_documents(directory: Path) -> list[dict[str, Any]]:
    """The bundle files' documents for the planner (not to be changed); none when the bundle is absent
    or unreadable (an estimate is never worth a failed session)."""
    try:
        return [_read_bundle_file(path, path.stat().st_mtime_ns, path.stat().st_size)
                for path in bundle_files(directory)]
    except (OSError, ValueError, KeyError):
        return []


def reference_wall_times(directory: Path = BUNDLE_DIR) -> list[tuple[str, Any, str, float, bool]]:
    """(protocol, params, device, wall seconds, seed-batched) of every bundled run, for the planner's
    estimates."""
    return [(run["protocol"], run["params"], run["device"], run["wall_seconds"], bool(run.get("seed_batched")))
            for document in _reference_documents(directory) for run in document["runs"]]


def reference_inputs_missing(directory: Path = BUNDLE_DIR) -> list[dict[str, Any]]:
    """The bundled "input missing" records, so the planner knows a job that ends `not run` at once (a
    script that exists in no commit) before any session here has tried it."""
    return [record for document in _reference_documents(directory) for record in document["verdicts"]
            if record.get("verdict") == "not run" and record.get("not_run") == MISSING]


# -- audit ---------------------------------------------------------------------------------------

@dataclass
class Audit:
    checked_runs: int = 0
    checked_verdicts: int = 0
    rerun: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def deterministic_outputs(outputs: dict[str, Any]) -> str:
    """A run's outputs without its clock readings, as canonical JSON: what a re-run must reproduce."""
    return canonical_json({name: value for name, value in outputs.items() if not is_timing_output(name)})


# A `not run` verdict that reads none of the bundle's runs measured nothing: its code version and run
# keys are those of the code that built the bundle, and move with every later edit of that code; and
# why it did not run ("input missing" where it was built, which the runs cannot show) is not audited.
_UNMEASURED_IDENTITY = ("code_version", "run_keys", "not_run")


def _comparable(record: dict[str, Any], bundled_keys: set[str]) -> dict[str, Any]:
    unmeasured = record.get("verdict") == "not run" and not bundled_keys & set(record.get("run_keys") or ())
    return {name: record.get(name) for name in _AUDITED if not (unmeasured and name in _UNMEASURED_IDENTITY)}


def sample(runs: list[Run], budget_seconds: float, salt: str) -> list[Run]:
    """A deterministic sample of runs (drawn by hashing each key with `salt`, e.g. the commit) whose
    recorded wall times add up to at most `budget_seconds`."""
    order = sorted(runs, key=lambda run: hashlib.sha256((salt + run.run_key).encode()).hexdigest())
    chosen, spent = [], 0.0
    for run in order:
        if spent + run.wall_seconds <= budget_seconds:
            chosen.append(run)
            spent += run.wall_seconds
    return chosen


def processor_named_fully(name: str) -> bool:
    """Whether a run's CPU name carries family, model and vector kernels (`executors.device_name`),
    as every CPU run recorded since 2026-12-07 does, rather than the model name alone ("AMD EPYC")."""
    return re.search(r"\((family \d+ model \d+, )?[A-Z][A-Z0-9_]*\)$", name) is not None


def audit(path: Path, entries: list[Entry], *, rerun_seconds: float = 0.0, salt: str = "",
          data_dir: Path | None = None, unnamed_processor_is_here: bool = False,
          progress: Callable[[str], None] = lambda message: None) -> Audit:
    """Check one bundle file; `problems` lists what does not hold (an empty list passes).

    1. Every run's key is the hash of its identity (a run whose outputs or identity were edited
       cannot keep its key unless the identity was forged consistently, which step 3 catches on CPU).
    2. Every verdict equals the verdict recomputed here from the bundled outputs (under the code
       version its runs recorded, so a stale bundle is checked as thoroughly as a current one).
    3. CPU runs: among those this machine can re-run (the run's torch version, code version and the
       processor model it was recorded on; the others are listed in `skipped`), a sample drawn from
       `salt` with recorded wall times within `rerun_seconds` is run again here and must give
       byte-identical outputs (clock readings aside: `deterministic_outputs`). Runs whose CPU was
       recorded by model name alone are re-run only with `unnamed_processor_is_here` (a way to learn
       whether this machine is theirs: any difference is then a problem).
    """
    from verify.executors import SequentialExecutor
    from verify.planner import Job, RunSpec
    from verify.runner import code_version

    result = Audit()
    try:
        document = read_export(path)
    except ValueError as error:
        result.problems.append(str(error))
        return result
    runs = [Run(**run) for run in document["runs"]]
    for run in runs:
        expected = run_key(run.protocol, run.params, run.seed, run.device, run.torch_version, run.code_version,
                           run.threads or 1, seed_batched=run.seed_batched)
        if expected != run.run_key:
            result.problems.append(f"{path.name}: run {run.run_key[:12]} ({run.protocol} seed {run.seed}): its key "
                                   f"is not the hash of its identity")
        result.checked_runs += 1
    bundled_keys = {run.run_key for run in runs}
    devices = {record["device"] for record in document["verdicts"]}
    by_id = {entry.id: entry for entry in entries}
    for device in sorted(devices):
        recorded = [record for record in document["verdicts"] if record["device"] == device]
        try:
            identity = Identity.of(runs, device)
        except BundleError as error:
            result.problems.append(f"{path.name}: {error}")
            continue
        current = [by_id[record["claim_id"]] for record in recorded if record["claim_id"] in by_id]
        again = {record["claim_id"]: record for record in recompute(current, runs, identity)}
        for record in recorded:
            result.checked_verdicts += 1
            fresh = again.get(record["claim_id"])
            if fresh is None:
                result.problems.append(f"{path.name}: verdict of {record['claim_id']} on {device}: no such entry in "
                                       f"the ledgers")
            elif _comparable(fresh, bundled_keys) != _comparable(record, bundled_keys):
                changed = [name for name in _comparable(record, bundled_keys) if fresh.get(name) != record.get(name)]
                result.problems.append(f"{path.name}: verdict of {record['claim_id']} on {device} differs from the one "
                                       f"recomputed from its runs ({', '.join(changed[:4])})")
    import torch

    from verify.executors import device_name

    here = device_name("cpu")
    versions: dict[tuple[str, bool], str] = {}
    candidates = []
    for run in runs:
        if run.device not in ("cpu", ANY_DEVICE):
            continue
        if (run.protocol, run.seed_batched) not in versions:  # one hash per protocol, not one per run
            versions[run.protocol, run.seed_batched] = code_version(run.protocol, run.seed_batched)
        if run.torch_version != torch.__version__ or run.code_version != versions[run.protocol, run.seed_batched]:
            result.skipped.append(f"{run.protocol} seed {run.seed}: recorded with torch {run.torch_version}, code "
                                  f"{run.code_version} (not this machine's)")
            continue
        assumed = unnamed_processor_is_here and not processor_named_fully(run.device_name)
        if run.device_name != here and not assumed:  # byte-identity is promised on one processor model
            result.skipped.append(f"{run.protocol} seed {run.seed}: recorded on {run.device_name}, this is {here}")
            continue
        candidates.append(run)
    for run in sample(candidates, rerun_seconds, salt):  # the budget goes to runs this machine can re-run
        spec = RunSpec(run.protocol, run.params, run.seed, run.device, run.torch_version, run.code_version,
                       run.threads or 1, run.seed_batched)
        outcome: dict[str, Any] = {}
        SequentialExecutor(data_dir or Path(".")).run(
            [Job([spec])], lambda job, done: outcome.update(runs=done),
            lambda job, error: outcome.update(error=error))
        label = f"{run.protocol.split(':')[-1]} seed {run.seed} ({run.wall_seconds:.0f}s recorded)"
        progress(f"audit: re-ran {label}")
        if "error" in outcome:
            result.problems.append(f"{path.name}: re-running {label} failed: {outcome['error']}")
        elif deterministic_outputs(outcome["runs"][0].outputs) != deterministic_outputs(run.outputs):
            result.problems.append(f"{path.name}: re-running {label} gave different outputs than the bundle holds")
        result.rerun.append(label)
    return result
