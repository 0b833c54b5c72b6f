"""The run planner: the unique protocol runs a selection of ledger entries needs, less those stored.

Entries that measure the same experiment share runs: a run is identified by its `RunSpec` (protocol,
parameters, seed, device, torch version, code version, CPU threads, and whether it was trained
together with other seeds), and the plan holds each identity once. What the store already holds is
subtracted, so executing the plan does exactly the missing work; verdicts are computed from the store
afterwards, whichever executor ran the plan.

Runs of a protocol that can train several seeds at once (a form in the `seed_batched` module beside
it: `executors.seed_batched_form`) are grouped into one job per (protocol, parameters, device) when seed batching is on.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Iterable, Mapping, Sequence

from verify.store import ResultsStore, canonical_json

ANY_DEVICE = "any"  # the device of a device-independent run: executed once, on CPU, for every device


@dataclass(frozen=True, eq=False)
class RunSpec:
    """Everything that identifies one protocol run; `key` is its hash, the store's primary key."""

    protocol: str
    params: dict[str, Any]
    seed: int
    device: str
    torch_version: str
    code_version: str
    threads: int
    seed_batched: bool = False

    @cached_property
    def key(self) -> str:
        return run_key(self.protocol, self.params, self.seed, self.device, self.torch_version, self.code_version,
                       self.threads, seed_batched=self.seed_batched)

    @property
    def group(self) -> tuple[str, str, str]:
        """Runs that differ only in their seed: what seed batching trains together."""
        return self.protocol, canonical_json(self.params), self.device

    def describe(self) -> str:
        name = self.protocol.rsplit(":", 1)[-1]
        return f"{name} seed {self.seed} on {self.device}"


def run_key(protocol: str, params: dict[str, Any], seed: int, device: str, torch_version: str, code: str,
            threads: int, *, seed_batched: bool = False) -> str:
    """Hash of a run's identity. CPU thread count is part of it: reductions split across threads
    round differently, so a 1-thread and a 2-thread run of the same seed may differ in the last bits.
    Seed-batched training rounds differently from one seed at a time (batched matrix products), so
    it is a different identity too; it enters the hash only when set, keeping older keys valid."""
    identity = {"protocol": protocol, "params": params, "seed": seed, "device": device, "torch": torch_version,
                "code": code, "threads": threads}
    if seed_batched:
        identity["seed_batched"] = True
    return hashlib.sha256(canonical_json(identity).encode()).hexdigest()


@dataclass
class Job:
    """What one executor call runs: a single run, or the seeds of one group trained together."""

    specs: list[RunSpec]
    entries: list[str] = field(default_factory=list)
    estimate: float | None = None  # seconds, from stored wall times of the same protocol
    estimate_from_same_params: bool = False  # else from runs of the protocol with other parameters
    estimate_from_reference: bool = False  # from the reference bundle's runs (another machine), not this store's
    spread: tuple[float, float, int] | None = None  # other parameters' times, lowest and highest, and how many sets
    estimate_from_other_form: bool = False  # a seed-batched job timed from one-seed-at-a-time runs, or the reverse
    missing: list[str] = field(default_factory=list)  # data files it reads that are absent: it ends `not run` at once
    # why a session (this store's, or the reference bundle's) found its input absent, for a job reading
    # no declared dataset (a script that exists nowhere): it ends `not run` at once too
    unavailable: str | None = None

    @property
    def ends_not_run(self) -> bool:
        """Whether it ends `not run` at once, taking no time: an input is known to be absent."""
        return bool(self.missing) or self.unavailable is not None

    @property
    def seed_batched(self) -> bool:
        return self.specs[0].seed_batched

    @property
    def timing_group(self) -> tuple:
        """Jobs that take alike: the same protocol, parameters, device and form (batched or not)."""
        return (*self.specs[0].group, self.seed_batched)

    def describe(self) -> str:
        first = self.specs[0]
        if len(self.specs) == 1:
            return first.describe()
        seeds = ",".join(str(spec.seed) for spec in self.specs)
        return f"{first.protocol.rsplit(':', 1)[-1]} seeds {seeds} (batched) on {first.device}"


@dataclass
class Plan:
    jobs: list[Job]
    cached: int  # unique runs the selection needs that the store already holds
    skipped: dict[str, str]  # entry id -> why it needs no run here
    other_threads: dict[int, int] = field(default_factory=dict)  # thread count -> pending runs stored with it
    older_code: dict[str, int] = field(default_factory=dict)  # protocol -> pending runs stored under other code

    @property
    def pending_runs(self) -> int:
        return sum(len(job.specs) for job in self.jobs)

    def estimate(self) -> tuple[float, int]:
        """(seconds of the jobs with an estimate, number of jobs without one), leaving out the jobs
        whose input is missing (they take no time)."""
        runnable = [job for job in self.jobs if not job.ends_not_run]
        known = [job.estimate for job in runnable if job.estimate is not None]
        return sum(known), len(runnable) - len(known)

    def lines(self, workers: int = 1) -> list[str]:
        """The plan as a person reads it: one line per pending job, then the totals."""
        lines = []
        for index, job in enumerate(self.jobs, 1):
            if job.missing:
                more = f" +{len(job.missing) - 1} more" if len(job.missing) > 1 else ""
                names = " ".join(dict.fromkeys(key.split("/", 1)[0] for key in job.missing))
                estimate = f"input missing: {job.missing[0]}{more} (python -m verify fetch-data {names})"
            elif job.unavailable is not None:
                estimate = f"input missing (a stored `not run`): {_first_clause(job.unavailable)}"
            elif job.estimate is None:
                estimate = "est. unknown"
            elif job.estimate_from_reference:
                other = "" if job.estimate_from_same_params else f", {_others(job)}"
                estimate = f"est. ~{format_seconds(job.estimate)} (reference bundle{other}{_form(job)})"
            elif job.estimate_from_same_params and not job.estimate_from_other_form:
                estimate = f"est. {format_seconds(job.estimate)}"
            elif job.estimate_from_same_params:
                estimate = f"est. ~{format_seconds(job.estimate)} ({_form(job)[2:]})"
            else:
                estimate = f"est. ~{format_seconds(job.estimate)} (from {_others(job)})"
            readers = ", ".join(job.entries[:3]) + (f" +{len(job.entries) - 3} more" if len(job.entries) > 3 else "")
            lines.append(f"[{index}/{len(self.jobs)}] {job.describe()}  {estimate}  ({readers})")
        known, unknown = self.estimate()
        if unknown:
            total = (f"{format_seconds(known)} + " if known else "") + f"{unknown} job(s) of unknown length"
        else:
            total = format_seconds(known)
        runnable = [job.estimate for job in self.jobs if not job.ends_not_run]
        wall = ""
        if workers > 1 and runnable and not unknown:
            wall = f", about {format_seconds(parallel_wall(runnable, workers))} of wall time on {workers} workers"
        missing = len(self.jobs) - len(runnable)
        missing = f"; {missing} job(s) whose input is missing here end `not run` at once" if missing else ""
        lines.append(f"pending: {self.pending_runs} run(s) in {len(self.jobs)} job(s), estimated {total}{wall}{missing}; "
                     f"already stored: {self.cached}; entries needing no run here: {len(self.skipped)}")
        guessed = sum(job.estimate is not None and not job.estimate_from_same_params and not job.ends_not_run
                      for job in self.jobs)
        if guessed:
            lines.append(f"note: {guessed} job(s) are estimated from runs of other parameters of their protocol (their "
                         f"lines say so); a CI-sized and a full-size run may differ 100-fold, so the total is a rough guide")
        if self.other_threads:
            threads, count = max(self.other_threads.items(), key=lambda item: (item[1], -item[0]))
            lines.append(f"note: {count} pending run(s) are stored with {threads} CPU thread(s) per run; the thread "
                         f"count is part of a run's identity, so --threads {threads} would reuse them")
        if self.older_code:
            names = sorted(self.older_code, key=lambda protocol: (-self.older_code[protocol], protocol))
            listed = ", ".join(name.rsplit(":", 1)[-1] for name in names[:3]) + (
                f" +{len(names) - 3} more" if len(names) > 3 else "")
            lines.append(f"note: {sum(self.older_code.values())} pending run(s) are stored under other code of their "
                         f"protocol ({listed}): the source they reach changed since, so they run again")
        return lines


def _form(job: Job) -> str:
    """', from runs one seed at a time' where a seed-batched job is timed from sequential runs (a
    ceiling: on a GPU the batch takes about the time of one seed), or the reverse."""
    if not job.estimate_from_other_form:
        return ""
    return ", from runs one seed at a time" if job.seed_batched else ", from seed-batched runs"


def _others(job: Job) -> str:
    """What an estimate from other parameters rests on: 'other parameters: 40.0s to 1h08m' where their
    times differ (a protocol run at several sizes), 'one other parameter set' where only one was timed
    (a smoke size standing in for a full one can be 100 times off)."""
    if job.spread is None:
        return "other parameters"
    low, high, sets = job.spread
    if sets == 1:
        return "one other parameter set"
    if format_seconds(low) == format_seconds(high):
        return "other parameters"
    return f"other parameters: {format_seconds(low)} to {format_seconds(high)}"


def parallel_wall(seconds: Iterable[float], workers: int) -> float:
    """Wall time of jobs taking `seconds` on `workers` workers, each job (longest first) going to the
    least loaded worker: the longest worker's load (what a pool that hands out jobs longest first
    takes, when the estimates hold), not the even share sum/workers that no schedule may reach."""
    loads = [0.0] * max(1, workers)
    for job in sorted(seconds, reverse=True):
        loads[loads.index(min(loads))] += job
    return max(loads)


def format_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class WallTimes:
    """Estimated seconds of a run from stored runs: same protocol, parameters and device (runs of the
    same form, seed-batched or one seed at a time, first), else the same protocol on the device;
    failing both, the same lookups in `reference` (the reference bundle's runs, measured on the
    machines named in its identity; those of other parameters only where `reference_other_params`: a
    smoke run's parameters shrink it far below the bundle's full-size runs); else unknown. Seed-batched
    runs store their share of the batch. Rows: (protocol, params, device, wall seconds[, seed_batched])."""

    def __init__(self, rows: Iterable[tuple], reference: Iterable[tuple] = (), reference_other_params: bool = True):
        self._tables = [self._averages(rows), self._averages(reference)]
        if not reference_other_params:  # the reference's runs of other parameters say nothing here
            self._tables[1] = (*self._tables[1][:2], {})

    @staticmethod
    def _averages(rows: Iterable[tuple]) -> tuple[dict, dict, dict]:
        by_form: dict[tuple[str, str, str, bool], list[float]] = defaultdict(list)
        exact: dict[tuple[str, str, str], list[float]] = defaultdict(list)
        coarse: dict[tuple[str, str], list[float]] = defaultdict(list)
        for protocol, params, device, wall, *batched in rows:
            params = canonical_json(json.loads(params) if isinstance(params, str) else params)
            by_form[protocol, params, device, bool(batched and batched[0])].append(wall)
            exact[protocol, params, device].append(wall)
            coarse[protocol, device].append(wall)
        return tuple({key: sum(values) / len(values) for key, values in table.items()}
                     for table in (by_form, exact, coarse))

    def spread(self, spec: RunSpec) -> tuple[float, float, int] | None:
        """(lowest, highest, how many) mean times of the protocol's parameter sets on the device, where the
        estimate comes from other parameters (None where it comes from the same ones, or there is none)."""
        for _, exact, coarse in self._tables:
            if spec.group in exact:
                return None
            if (spec.protocol, spec.device) in coarse:
                times = [wall for (protocol, _, device), wall in exact.items()
                         if (protocol, device) == (spec.protocol, spec.device)]
                return min(times), max(times), len(times)
        return None

    def estimate(self, spec: RunSpec) -> tuple[float | None, bool, bool, bool]:
        """(seconds or None, whether from runs with the same parameters, whether from the reference,
        whether from runs of the other form: one seed at a time for a seed-batched run, or batched)."""
        for from_reference, (by_form, exact, coarse) in enumerate(self._tables):
            if (*spec.group, spec.seed_batched) in by_form:
                return by_form[(*spec.group, spec.seed_batched)], True, bool(from_reference), False
            if spec.group in exact:  # only runs of the other form
                return exact[spec.group], True, bool(from_reference), True
            if (spec.protocol, spec.device) in coarse:
                return coarse[spec.protocol, spec.device], False, bool(from_reference), False
        return None, False, False, False


def _first_clause(reason: str, limit: int = 120) -> str:
    """The head of a `not run` reason, for a plan line: up to its first aside, comma or sentence end."""
    head = re.split(r" \(|, |; |\. ", reason, maxsplit=1)[0].rstrip(".")
    return head if len(head) <= limit else head[: limit - 1] + "…"


def build_plan(needs: Iterable[tuple[str, list[RunSpec] | str]], store: ResultsStore, *,
               skip_stored: bool = True, done: Iterable[str] = (), longest_first: bool = False,
               reference_walls: Iterable[tuple] = (), reference_other_params: bool = True,
               missing: Mapping[str, Sequence[str]] | None = None,
               unavailable: Mapping[str, str] | None = None) -> Plan:
    """Plan the runs that `needs` lists: (entry id, its run specs) or (entry id, reason it needs none).

    skip_stored: leave out runs the store holds (False for --no-cache: every run once, deduplicated).
    done: keys already executed in this session (never planned again).
    longest_first: order jobs by estimated time, longest (and unknown) first, which shortens the
    wall time of a parallel executor; otherwise jobs follow the entries' order.
    reference_walls: (protocol, params, device, wall seconds[, seed-batched]) of the reference bundle's runs, for
    estimates where this store has none (a new user's first --plan); those of other parameters
    only where `reference_other_params` (the reference bundle is full-size: not for a smoke plan).
    missing: entry id -> the data files it reads that are absent here; its jobs carry them.
    unavailable: entry id -> why a stored session found an input of it absent (entries that declare no
    dataset files to look for); its jobs carry the reason.
    """
    readers: dict[str, list[str]] = {}
    specs: dict[str, RunSpec] = {}
    skipped: dict[str, str] = {}
    for entry_id, runs in needs:
        if isinstance(runs, str):
            skipped[entry_id] = runs
            continue
        for spec in runs:
            specs.setdefault(spec.key, spec)
            readers.setdefault(spec.key, [])
            if entry_id not in readers[spec.key]:
                readers[spec.key].append(entry_id)
    done = set(done)
    stored = store.stored_keys(specs) if skip_stored else set()
    pending = [spec for key, spec in specs.items() if key not in stored and key not in done]
    walls = WallTimes(store.wall_times(), reference_walls, reference_other_params)

    jobs: list[Job] = []
    batches: dict[tuple[str, str, str], Job] = {}
    for spec in pending:
        if spec.seed_batched and spec.group in batches:
            job = batches[spec.group]
            job.specs.append(spec)
        else:
            job = Job([spec])
            jobs.append(job)
            if spec.seed_batched:
                batches[spec.group] = job
        job.entries.extend(entry for entry in readers[spec.key] if entry not in job.entries)
    for job in jobs:
        job.missing = list(dict.fromkeys(key for entry in job.entries for key in (missing or {}).get(entry, ())))
        job.unavailable = next((unavailable[entry] for entry in job.entries if entry in (unavailable or {})), None)
        estimates = [walls.estimate(spec) for spec in job.specs]
        seconds = [estimate for estimate, _, _, _ in estimates]
        job.estimate = None if None in seconds else sum(seconds)
        job.estimate_from_same_params = all(same for _, same, _, _ in estimates)
        job.estimate_from_reference = any(reference for _, _, reference, _ in estimates)
        job.estimate_from_other_form = any(other for _, _, _, other in estimates)
        spreads = [walls.spread(spec) for spec in job.specs]
        if job.estimate is not None and None not in spreads:  # a batched job's: its seeds' spreads summed
            job.spread = (sum(low for low, _, _ in spreads), sum(high for _, high, _ in spreads),
                          min(sets for _, _, sets in spreads))
    if longest_first:
        jobs.sort(key=lambda job: -(float("inf") if job.estimate is None else job.estimate))
    cached = len(set(specs) & (stored | done))
    other_threads: dict[int, int] = {}
    older_code: dict[str, int] = {}
    if pending and skip_stored:
        # Stored runs that differ from a pending one in a single field of its identity.
        threads_of: dict[tuple, set[int]] = defaultdict(set)
        code_of: dict[tuple, set[str]] = defaultdict(set)
        for protocol, params, seed, device, torch_version, code, threads, batched in store.identities():
            if threads is not None and not batched:
                threads_of[protocol, params, seed, device, torch_version, code].add(threads)
            code_of[protocol, params, seed, device, torch_version, threads, batched].add(code)
        for spec in pending:
            params = canonical_json(spec.params)
            if not spec.seed_batched:
                for threads in threads_of.get((spec.protocol, params, spec.seed, spec.device, spec.torch_version,
                                               spec.code_version), ()):
                    if threads != spec.threads:
                        other_threads[threads] = other_threads.get(threads, 0) + 1
            codes = code_of.get((spec.protocol, params, spec.seed, spec.device, spec.torch_version, spec.threads,
                                 spec.seed_batched), set())
            if codes - {spec.code_version}:
                older_code[spec.protocol] = older_code.get(spec.protocol, 0) + 1
    return Plan(jobs, cached, skipped, other_threads, older_code)
