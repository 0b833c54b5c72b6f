"""Runs a ledger entry's protocol once per seed (cached), measures it and gives the verdict.

Data flows one way: entry -> protocol runs (one per seed and device, cached in the store) ->
per-seed metric values -> summary and verdict -> verdict record in the store.

A protocol is resolved from its ledger name ("package.module:function") at run time, so this
module never imports a system under test.
"""

from __future__ import annotations

import hashlib
import importlib
import platform
import subprocess
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import torch

from verify import metrics
from verify.ledger import Entry
from verify.store import ResultsStore, Run, canonical_json, now_iso
from verify.verdicts import Verdict, decide, summarize

IMPLEMENTATIONS_DIR = Path(__file__).resolve().parent.parent / "implementations"
SHARED_PACKAGES = ("common", "baselines")


def resolve_device(requested: str) -> str:
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was requested but torch.cuda.is_available() is False")
    if requested not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {requested!r}; use cpu, cuda or auto")
    return requested


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name(0)
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


@lru_cache(maxsize=None)
def code_version(protocol: str) -> str:
    """SHA-256 of the source the protocol can reach: its system package plus the shared packages.

    Content-addressed rather than a git commit, so a cached run is invalidated exactly when the code
    it ran changes, and an uncommitted edit is never mistaken for the committed code.
    """
    module = protocol.split(":", 1)[0].split(".")
    packages = set(SHARED_PACKAGES)
    if len(module) > 1 and module[0] == "implementations":
        packages.add(module[1])
    digest = hashlib.sha256()
    for package in sorted(packages):
        for path in sorted((IMPLEMENTATIONS_DIR / package).rglob("*.py")):
            digest.update(str(path.relative_to(IMPLEMENTATIONS_DIR)).encode() + b"\0")
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


def resolve_protocol(name: str) -> Callable[..., dict[str, Any]]:
    module_name, function_name = name.split(":", 1)
    module = importlib.import_module(module_name)
    try:
        return getattr(module, function_name)
    except AttributeError:
        raise LookupError(f"protocol {name!r}: module {module_name} has no function {function_name!r}") from None


def run_key(protocol: str, params: dict[str, Any], seed: int, device: str, torch_version: str, code: str,
            threads: int) -> str:
    """Hash of a run's identity. CPU thread count is part of it: reductions split across threads
    round differently, so a 1-thread and a 2-thread run of the same seed may differ in the last bits."""
    identity = {"protocol": protocol, "params": params, "seed": seed, "device": device, "torch": torch_version,
                "code": code, "threads": threads}
    return hashlib.sha256(canonical_json(identity).encode()).hexdigest()


class ProtocolOutputError(TypeError):
    """A protocol returned something that is not a JSON-serialisable dict."""


def _seed_everything(seed: int) -> None:
    seeding = importlib.import_module("implementations.common.seeding")
    seeding.seed_everything(seed)


@dataclass
class Runner:
    """Evaluates ledger entries on one device, reusing finished runs from the store."""

    store: ResultsStore
    data_dir: Path
    device: str = "cpu"
    profile: str = "smoke"
    use_cache: bool = True
    seed_limit: int | None = None
    progress: Callable[[str], None] = print
    torch_version: str = field(default_factory=lambda: torch.__version__)

    def __post_init__(self) -> None:
        self.device_name = device_name(self.device)

    def seeds_for(self, entry: Entry) -> tuple[int, ...]:
        return entry.seeds if self.seed_limit is None else entry.seeds[: self.seed_limit]

    def run(self, entry: Entry, seed: int) -> Run:
        """One protocol run: from the cache when this identity already finished, else executed."""
        params = entry.params_for(self.profile)
        code = code_version(entry.protocol)
        key = run_key(entry.protocol, params, seed, self.device, self.torch_version, code, torch.get_num_threads())
        if self.use_cache:
            cached = self.store.get_run(key)
            if cached is not None:
                self.progress(f"{entry.id} seed {seed} on {self.device}: cached ({cached.wall_seconds:.1f}s when run)")
                return cached
        protocol = resolve_protocol(entry.protocol)
        self.progress(f"{entry.id} seed {seed} on {self.device}: running {entry.protocol} ...")
        _seed_everything(seed)
        started = time.perf_counter()
        outputs = protocol(seed=seed, device=self.device, data_dir=self.data_dir, **params)
        wall = time.perf_counter() - started
        if not isinstance(outputs, dict):
            raise ProtocolOutputError(f"protocol {entry.protocol} returned {type(outputs).__name__}, not a dict")
        try:
            canonical_json(outputs)
        except (TypeError, ValueError) as error:
            raise ProtocolOutputError(f"protocol {entry.protocol} returned outputs that are not plain JSON: {error}") from None
        run = Run(key, entry.protocol, params, seed, self.device, self.device_name, self.torch_version, code, outputs, wall, now_iso())
        self.store.put_run(run)
        self.progress(f"{entry.id} seed {seed} on {self.device}: done in {wall:.1f}s")
        return run

    def _record(self, entry: Entry, verdict: Verdict, seeds: tuple[int, ...], runs: list[Run], values: list[float],
                summary=None) -> dict[str, Any]:
        return {
            "claim_id": entry.id,
            "kind": entry.kind,
            "of": entry.of,
            "system": entry.system,
            "title": entry.title,
            "quote": entry.quote,
            "source": None if entry.source is None else dict(entry.source.__dict__),
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
            "expected": entry.expected,
            "verdict": verdict.status,
            "direction": verdict.direction,
            "reason": verdict.reason,
            "seeds": list(seeds),
            "values": values,
            "mean": None if summary is None else summary.mean,
            "interval": None if summary is None else list(summary.interval),
            "interval_method": None if summary is None else summary.method,
            "device": self.device,
            "device_name": self.device_name,
            "torch_version": self.torch_version,
            "code_version": code_version(entry.protocol),
            "environment": dict(run_environment()),
            "run_keys": [run.run_key for run in runs],
            "created": now_iso(),
        }

    def evaluate(self, entry: Entry) -> dict[str, Any]:
        """Run every seed of the entry, measure, decide, store and return the verdict record."""
        seeds = self.seeds_for(entry)
        if entry.device == "cuda" and self.device != "cuda" and self.profile != "full":
            verdict = Verdict("not run", None, "needs a CUDA device: run with --device cuda, or on CPU with --profile full")
            record = self._record(entry, verdict, seeds, [], [])
            self.store.put_verdict(record)
            return record
        runs: list[Run] = []
        for seed in seeds:
            try:
                runs.append(self.run(entry, seed))
            except Exception as error:  # noqa: BLE001 - only prerequisites marked not_run are caught
                if not getattr(error, "not_run", False):
                    raise
                record = self._record(entry, Verdict("not run", None, str(error)), seeds, runs, [])
                self.store.put_verdict(record)
                return record
        values = [metrics.compute(entry.metric, run.outputs, entry.metric_args) for run in runs]
        summary = summarize(values, entry.interval)
        if not entry.runs_full_protocol(self.profile):
            verdict = Verdict(
                "not run",
                None,
                f"tier 'full': ran the CI-sized smoke protocol only (mean {summary.mean:.6g} over {summary.n} seed(s)); "
                "run with --profile full for the verdict",
            )
        elif entry.claimed is None:
            verdict = Verdict("measured", None, f"mean {summary.mean:.6g}, 95% interval "
                              f"[{summary.interval[0]:.6g}, {summary.interval[1]:.6g}] over {summary.n} seed(s)")
        else:
            verdict = decide(values, summary, entry.claimed, entry.comparison, entry.tolerance)
        record = self._record(entry, verdict, seeds, runs, values, summary)
        self.store.put_verdict(record)
        return record
