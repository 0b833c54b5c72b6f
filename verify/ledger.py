"""The ledger: claims and findings as data, validated on load.

One TOML file per system under ``claims/<system>/``. An ``[[experiment]]`` holds, once, how to
measure: protocol, parameters, smoke parameters, pre-registered seeds, tier, device needs, datasets
and any deviation from the original protocol. Each ``[[claim]]`` quotes a documented claim verbatim,
gives its kind (universal, single_run, mean, exact: the verdict rule) and names the experiment that
measures it; each ``[[finding]]`` is a control or mechanism measurement of an experiment, shown under
its claim. An entry may instead carry the experiment's fields itself (a one-entry experiment, handy in
tests). A malformed entry raises :class:`LedgerError` with a one-line message that names the file,
the entry and the field.

A protocol is confined to plain functions defined in the `implementations` package (see
:func:`resolve_protocol`): a ledger is data, and must not be able to name `numpy:savez` or
`torch.hub:load` and so run arbitrary code. Tests that write their own toy protocol modules list
the folders holding them in ``$CLAIMS_PROTOCOL_ROOTS`` (``os.pathsep``-separated; unset by default).
"""

from __future__ import annotations

import collections
import functools
import hashlib
import importlib
import importlib.util
import inspect
import json
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from types import FunctionType
from typing import Any, Iterable

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

from verify import metrics
from verify.verdicts import CLAIM_KINDS, COMPARISONS, KIND_COMPARISONS, MIN_SEEDS, STOCHASTIC_KINDS

TIERS = ("ci", "full")
DEVICES = ("any", "cuda")
INTERVAL_METHODS = ("t", "bootstrap")
# Used with fullmatch: `re.match` with `$` would accept a trailing newline.
_PROTOCOL_PATTERN = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*", re.ASCII)
_ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]*")
# numpy's legacy seeding (np.random.seed, RandomState) takes 0 <= seed < 2**32.
SEED_LIMIT = 2**32
# The runner passes these to every protocol itself (`seeds` to a seed-batched one).
RESERVED_PARAMS = ("seed", "seeds", "device", "data_dir")
PROTOCOL_ROOTS_VARIABLE = "CLAIMS_PROTOCOL_ROOTS"


class LedgerError(ValueError):
    """A ledger file or entry is malformed; the message names file, entry and field."""


@dataclass(frozen=True)
class Source:
    repository: str
    file: str
    document: str | None = None  # file name of the archived copy under shared/seeds/


@dataclass(frozen=True)
class TableCell:
    """Where a claimed number sits in a table of the source, so the report can rebuild it."""

    name: str
    row: str
    column: str


@dataclass(frozen=True)
class Experiment:
    """How a set of claims and findings is measured: one protocol, its parameters and seeds."""

    id: str
    protocol: str
    seeds: tuple[int, ...]
    tier: str
    device: str
    path: Path
    params: dict[str, Any] = field(default_factory=dict)
    smoke_params: dict[str, Any] = field(default_factory=dict)
    datasets: tuple[str, ...] = ()
    deviation: str | None = None
    notes: str | None = None


@dataclass(frozen=True)
class Entry:
    """One claim or finding of the ledger, with its experiment's fields copied in."""

    kind: str  # "claim" or "finding"
    id: str
    system: str
    title: str
    metric: str
    protocol: str
    seeds: tuple[int, ...]
    tier: str
    device: str
    path: Path
    quote: str | None = None
    source: Source | None = None
    of: str | None = None
    claimed: float | tuple[float, float] | None = None
    comparison: str | None = None
    tolerance: float = 0.0
    tolerance_origin: str | None = None
    metric_args: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    smoke_params: dict[str, Any] = field(default_factory=dict)
    datasets: tuple[str, ...] = ()
    deviation: str | None = None
    table: TableCell | None = None
    interval: str = "t"
    notes: str | None = None
    experiment: str | None = None  # the [[experiment]] id; the entry's own id for a one-entry experiment
    claim_kind: str | None = None  # universal, single_run, mean or exact; None for a finding with no claimed value

    def params_for(self, profile: str) -> dict[str, Any]:
        """Protocol parameters for a profile: a full-tier entry runs its smoke size under `smoke`."""
        if profile == "smoke" and self.tier == "full":
            return {**self.params, **self.smoke_params}
        return dict(self.params)

    def runs_full_protocol(self, profile: str) -> bool:
        return profile == "full" or self.tier == "ci"


# The fields an [[experiment]] holds (an entry carries them itself only when it names no experiment).
EXPERIMENT_FIELDS = ("protocol", "params", "smoke_params", "seeds", "tier", "device", "datasets", "deviation")
# experiment field name -> (expected python type(s), required)
_EXPERIMENT_FIELDS: dict[str, tuple[tuple[type, ...], bool]] = {
    "id": ((str,), True),
    "protocol": ((str,), True),
    "params": ((dict,), False),
    "smoke_params": ((dict,), False),
    "seeds": ((list,), True),
    "tier": ((str,), True),
    "device": ((str,), True),
    "datasets": ((list,), False),
    "deviation": ((str,), False),
    "notes": ((str,), False),
}

# field name -> (expected python type(s), required for claims, required for findings)
_FIELDS: dict[str, tuple[tuple[type, ...], bool, bool]] = {
    "id": ((str,), True, True),
    "system": ((str,), True, True),
    "title": ((str,), False, True),
    "quote": ((str,), True, False),
    "source": ((dict,), True, False),
    "of": ((str,), False, True),
    "metric": ((str,), True, True),
    "metric_args": ((dict,), False, False),
    "claimed": ((int, float, list), True, False),
    "comparison": ((str,), True, False),
    "tolerance": ((int, float), True, False),
    "tolerance_origin": ((str,), True, False),
    "protocol": ((str,), True, True),
    "params": ((dict,), False, False),
    "smoke_params": ((dict,), False, False),
    "seeds": ((list,), True, True),
    "tier": ((str,), True, True),
    "device": ((str,), True, True),
    "datasets": ((list,), False, False),
    "deviation": ((str,), False, False),
    "table": ((dict,), False, False),
    "interval": ((str,), False, False),
    "notes": ((str,), False, False),
    "experiment": ((str,), False, False),
    "kind": ((str,), True, False),
}


def _type_name(value: Any) -> str:
    return type(value).__name__


def _shown(text: str) -> str:
    """Text as it may appear in a one-line message: as is when printable, else its repr."""
    return text if text.isprintable() else repr(text)


def _json_problem(value: Any) -> str | None:
    """Why `value` cannot be stored as canonical JSON (dates, NaN, infinities), or None."""
    try:
        json.dumps(value, allow_nan=False)
    except ValueError as error:
        return f"holds a number JSON cannot store ({error})"
    except TypeError as error:
        return f"holds a value JSON cannot store ({error})"
    return None


def protocol_roots() -> tuple[Path, ...]:
    """Folders whose modules may define protocols: the `implementations` package, then $CLAIMS_PROTOCOL_ROOTS."""
    spec = importlib.util.find_spec("implementations")
    roots = [Path(location).resolve() for location in spec.submodule_search_locations]
    extra = os.environ.get(PROTOCOL_ROOTS_VARIABLE, "")
    roots.extend(Path(folder).resolve() for folder in extra.split(os.pathsep) if folder)
    return tuple(roots)


class ProtocolError(ValueError):
    """A protocol name that does not resolve to a plain function defined under a protocol root."""


def _inside(path: str | None, roots: tuple[Path, ...]) -> bool:
    return path is not None and any(Path(path).resolve().is_relative_to(root) for root in roots)


@functools.lru_cache(maxsize=None)
def _resolve_confined(name: str, roots: tuple[Path, ...]) -> FunctionType:
    module_name, function_name = name.split(":")
    # Locate the top-level package without importing it: an arbitrary installed module named by a
    # ledger must not even be imported (importing runs its code).
    try:
        top = importlib.util.find_spec(module_name.split(".")[0])
    except ValueError:  # a module in sys.modules without a spec, such as __main__ under some runners
        top = None
    locations = [] if top is None else [top.origin if top.has_location else None,
                                        *(top.submodule_search_locations or [])]
    if not any(_inside(location, roots) for location in locations):
        raise ProtocolError(f"module {module_name} is not under {' or '.join(map(str, roots))}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ProtocolError(f"cannot import {module_name}: {error}") from None
    if not _inside(getattr(module, "__file__", None), roots):
        raise ProtocolError(f"module {module_name} is not under {' or '.join(map(str, roots))}")
    function = getattr(module, function_name, None)
    if function is None:
        raise ProtocolError(f"module {module_name} defines no {function_name!r}")
    # A plain function defined in that module: not a class, builtin or callable object, nor a
    # function imported from elsewhere (`from numpy import savez` inside implementations/).
    if not inspect.isfunction(function) or function.__module__ != module_name:
        raise ProtocolError(f"{name} is not a plain function defined in {module_name}")
    return function


def resolve_protocol(name: str) -> FunctionType:
    """The function a ledger's `protocol` names, confined to plain functions defined in modules under
    `protocol_roots()`. Raises ProtocolError with a one-line reason otherwise."""
    if not _PROTOCOL_PATTERN.fullmatch(name):
        raise ProtocolError(f"{name!r} is not 'package.module:function'")
    return _resolve_confined(name, protocol_roots())


class _EntryValidator:
    def __init__(self, path: Path, kind: str, index: int, raw: dict[str, Any],
                 experiments: dict[str, Experiment] | None = None):
        self.path, self.kind, self.raw = path, kind, raw
        self.experiments = experiments or {}
        identifier = raw.get("id")
        valid = isinstance(identifier, str) and _ID_PATTERN.fullmatch(identifier)
        self.label = f"{kind} '{identifier}'" if valid else f"{kind} #{index + 1}"

    def fail(self, field_name: str, problem: str) -> LedgerError:
        name = f"'{field_name}'" if field_name.isprintable() else repr(field_name)
        return LedgerError(f"{_shown(str(self.path))}: {self.label}: field {name}: {problem}")

    def _check_types(self, fields: dict[str, tuple[tuple[type, ...], bool]]) -> None:
        for name in self.raw:
            if name == "expected":
                raise self.fail(name, "the ledger no longer records measured verdicts: they live in "
                                      "results/baseline.json (pytest claims --update-baseline)")
            if name not in fields:
                raise self.fail(name, f"unknown field (known: {', '.join(sorted(fields))})")
        for name, (types, required) in fields.items():
            if name not in self.raw:
                if required:
                    raise self.fail(name, "missing")
                continue
            value = self.raw[name]
            # bool is an int subclass: a `true` where a number belongs is a type error.
            if isinstance(value, bool) or not isinstance(value, types):
                wanted = " or ".join(t.__name__ for t in types)
                raise self.fail(name, f"expected {wanted}, got {_type_name(value)} {value!r}")

    def validate_experiment(self) -> Experiment:
        self._check_types(_EXPERIMENT_FIELDS)
        return self._experiment_from_fields(self._identifier(), notes=self.raw.get("notes"))

    def _experiment_from_fields(self, identifier: str, notes: str | None) -> Experiment:
        """An Experiment from the experiment fields of this table (an [[experiment]] or a one-entry one)."""
        return Experiment(
            id=identifier,
            protocol=self._protocol(),
            params=self._params("params"),
            smoke_params=self._params("smoke_params"),
            seeds=self._seeds(),
            tier=self._choice("tier", TIERS),
            device=self._choice("device", DEVICES),
            datasets=self._datasets(),
            deviation=self.raw.get("deviation"),
            notes=notes,
            path=self.path,
        )

    def _experiment(self) -> Experiment:
        """The experiment the entry names, or the one-entry experiment its own fields describe."""
        name = self.raw.get("experiment")
        if name is None:
            return self._experiment_from_fields(self.raw["id"], notes=None)
        here = sorted(set(self.raw) & set(EXPERIMENT_FIELDS))
        if here:
            raise self.fail(here[0], f"belongs to experiment {name!r}; remove it here")
        if name not in self.experiments:
            known = ", ".join(sorted(self.experiments)) or "none"
            raise self.fail("experiment", f"no [[experiment]] {name!r} in this file (known: {known})")
        return self.experiments[name]

    def validate(self) -> Entry:
        raw = self.raw
        named = "experiment" in raw
        fields = {name: (types, (for_claim if self.kind == "claim" else for_finding) and not
                         (named and name in EXPERIMENT_FIELDS))
                  for name, (types, for_claim, for_finding) in _FIELDS.items()}
        self._check_types(fields)
        if self.kind == "finding" and ("claimed" in raw) != ("comparison" in raw):
            raise self.fail("claimed", "a finding gives both 'claimed' and 'comparison', or neither")
        identifier = self._identifier()
        experiment = self._experiment()
        comparison = self._comparison()
        return Entry(
            kind=self.kind,
            id=identifier,
            system=raw["system"],
            title=raw.get("title", raw["id"]),
            quote=self._quote(),
            source=self._source(),
            of=raw.get("of"),
            metric=self._metric(),
            metric_args=self._metric_args(),
            claimed=self._claimed(),
            comparison=comparison,
            tolerance=self._tolerance(),
            tolerance_origin=raw.get("tolerance_origin"),
            protocol=experiment.protocol,
            params=experiment.params,
            smoke_params=experiment.smoke_params,
            seeds=experiment.seeds,
            tier=experiment.tier,
            device=experiment.device,
            datasets=experiment.datasets,
            deviation=experiment.deviation,
            table=self._table(),
            interval=self._choice("interval", INTERVAL_METHODS, default="t"),
            notes=raw.get("notes"),
            path=self.path,
            experiment=experiment.id,
            claim_kind=self._claim_kind(comparison, experiment),
        )

    def _claim_kind(self, comparison: str | None, experiment: Experiment) -> str | None:
        """The claim's kind (the verdict rule), checked against its comparison and seeds."""
        if "kind" not in self.raw:
            if self.kind == "finding" and comparison is not None:
                raise self.fail("kind", f"missing: a finding with a claimed value needs a kind "
                                        f"({', '.join(CLAIM_KINDS)})")
            return None
        value = self._choice("kind", CLAIM_KINDS)
        if comparison is None:
            raise self.fail("kind", "a finding with no claimed value has no kind")
        if comparison not in KIND_COMPARISONS[value]:
            raise self.fail("kind", f"a {value} claim cannot be judged with comparison {comparison!r} "
                                    f"(allowed: {', '.join(KIND_COMPARISONS[value])})")
        if value in STOCHASTIC_KINDS and len(experiment.seeds) < MIN_SEEDS:
            raise self.fail("kind", f"a {value} claim needs at least {MIN_SEEDS} seeds; experiment "
                                    f"{experiment.id!r} has {len(experiment.seeds)}")
        return value

    def _identifier(self) -> str:
        value = self.raw["id"]
        if not _ID_PATTERN.fullmatch(value):
            raise self.fail("id", f"{value!r} is not a lower-case slug (letters, digits, '.', '_', '-')")
        return value

    def _choice(self, name: str, allowed: tuple[str, ...], default: str | None = None) -> str:
        value = self.raw.get(name, default)
        if value not in allowed:
            raise self.fail(name, f"{value!r} is not one of {', '.join(allowed)}")
        return value

    def _source(self) -> Source | None:
        if "source" not in self.raw:
            return None
        value = self.raw["source"]
        for key in ("repository", "file"):
            if not isinstance(value.get(key), str):
                raise self.fail("source", f"needs a string '{key}'")
        unknown = set(value) - {"repository", "file", "document"}
        if unknown:
            raise self.fail("source", f"unknown keys {sorted(unknown)}")
        document = value.get("document")
        if document is not None:
            if not isinstance(document, str):
                raise self.fail("source", f"'document' must be a string, got {_type_name(document)} {document!r}")
            problem = _document_name_problem(document)
            if problem:
                raise self.fail("source", f"'document' {document!r} {problem}")
        return Source(value["repository"], value["file"], document)

    def _quote(self) -> str | None:
        value = self.raw.get("quote")
        if value is not None and not normalise_text(value):
            raise self.fail("quote", f"is blank: {value!r}")
        return value

    def _metric(self) -> str:
        name = self.raw["metric"]
        if name not in metrics.REGISTRY:
            raise self.fail("metric", f"unknown metric {name!r} (known: {', '.join(sorted(metrics.REGISTRY))})")
        return name

    def _metric_args(self) -> dict[str, Any]:
        value = dict(self.raw.get("metric_args", {}))
        try:  # binds the arguments to the metric, and any nested metric specifications to theirs
            metrics.check_args(self.raw["metric"], value)
        except ValueError as error:
            raise self.fail("metric_args", str(error)) from None
        problem = _json_problem(value)
        if problem:
            raise self.fail("metric_args", problem)
        return value

    def _params(self, name: str) -> dict[str, Any]:
        value = dict(self.raw.get(name, {}))
        reserved = sorted(set(value) & set(RESERVED_PARAMS))
        if reserved:
            raise self.fail(name, f"{', '.join(reserved)} is set by the runner, not the ledger "
                                  f"(reserved: {', '.join(RESERVED_PARAMS)})")
        problem = _json_problem(value)
        if problem:
            raise self.fail(name, problem)
        return value

    def _claimed(self) -> float | tuple[float, float] | None:
        if "claimed" not in self.raw:
            return None
        value = self.raw["claimed"]
        if isinstance(value, list):
            if len(value) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
                raise self.fail("claimed", f"a range is two numbers [low, high], got {value!r}")
            low, high = self._finite("claimed", value[0]), self._finite("claimed", value[1])
            if low > high:
                raise self.fail("claimed", f"range low {low} exceeds high {high}")
            return (low, high)
        return self._finite("claimed", value)

    def _finite(self, name: str, value: int | float) -> float:
        try:
            number = float(value)
        except OverflowError:  # a TOML integer beyond float range
            raise self.fail(name, f"{value} is out of range") from None
        if not math.isfinite(number):
            raise self.fail(name, f"must be a finite number, got {value!r}")
        return number

    def _comparison(self) -> str | None:
        if "comparison" not in self.raw:
            return None
        value = self._choice("comparison", COMPARISONS)
        if isinstance(self._claimed(), tuple) and value != "equal":
            raise self.fail("comparison", f"a claimed range needs comparison 'equal', got {value!r}")
        return value

    def _tolerance(self) -> float:
        value = self._finite("tolerance", self.raw.get("tolerance", 0.0))
        if value < 0:
            raise self.fail("tolerance", f"must be >= 0, got {value}")
        return value

    def _protocol(self) -> str:
        value = self.raw["protocol"]
        try:
            resolve_protocol(value)
        except ProtocolError as error:
            raise self.fail("protocol", str(error)) from None
        return value

    def _seeds(self) -> tuple[int, ...]:
        value = self.raw["seeds"]
        if not value or not all(isinstance(s, int) and not isinstance(s, bool) for s in value):
            raise self.fail("seeds", f"expected a non-empty list of integers, got {value!r}")
        outside = [seed for seed in value if not 0 <= seed < SEED_LIMIT]
        if outside:
            raise self.fail("seeds", f"seed {outside[0]} is outside 0 .. 2**32 - 1 (numpy's seeding range)")
        if len(set(value)) != len(value):
            raise self.fail("seeds", f"duplicate seeds in {value!r}")
        return tuple(value)

    def _datasets(self) -> tuple[str, ...]:
        value = self.raw.get("datasets", [])
        if not all(isinstance(v, str) for v in value):
            raise self.fail("datasets", f"expected a list of strings, got {value!r}")
        return tuple(value)

    def _table(self) -> TableCell | None:
        if "table" not in self.raw:
            return None
        value = self.raw["table"]
        if set(value) != {"name", "row", "column"} or not all(isinstance(v, str) for v in value.values()):
            raise self.fail("table", f"needs exactly string keys name, row, column; got {value!r}")
        return TableCell(value["name"], value["row"], value["column"])


def normalise_text(text: str) -> str:
    """The one normalisation a quote and its document get before the quote is looked up: every run
    of whitespace becomes one space and leading and trailing whitespace goes. "Whitespace" is what
    `str.split()` splits on, which includes Unicode spaces such as the non-breaking space (U+00A0)
    that Markdown sources use between a number and its unit. Nothing else changes: case,
    punctuation, quotation marks, dashes and zero-width characters must match exactly."""
    return " ".join(text.split())


def quote_lines(quote: str, text: str) -> tuple[int, int] | None:
    """The first and last line (1-based) of `text` that the quote spans, matched as `check_quote`
    matches it (whitespace-normalised); None when it is not there."""
    words = quote.split()
    if not words:
        return None
    # Each word of the document with the line it sits on; the quote is a run of whole or partial
    # words, so it is found in the joined text and mapped back through word offsets.
    positions: list[tuple[int, int]] = []  # (offset in the normalised text, line number)
    pieces = []
    offset = 0
    for number, line in enumerate(text.splitlines(), start=1):
        for word in line.split():
            positions.append((offset, number))
            pieces.append(word)
            offset += len(word) + 1
    joined = " ".join(pieces)
    start = joined.find(" ".join(words))
    if start < 0:
        return None
    end = start + len(" ".join(words)) - 1
    first = last = positions[0][1]
    for word_offset, number in positions:
        if word_offset <= start:
            first = number
        if word_offset <= end:
            last = number
    return first, last


def document_provenance(entry: Entry, seeds_dir: Path | None) -> dict[str, Any] | None:
    """The archived document behind an entry's quote: its SHA-256 and the lines the quote spans, or
    None where the seeds folder or the document is absent (the quote check says so)."""
    if seeds_dir is None or entry.source is None or entry.source.document is None:
        return None
    document = seeds_dir / entry.source.document
    try:
        data = document.read_bytes()
    except OSError:
        return None
    lines = None
    if entry.quote:
        try:
            lines = quote_lines(entry.quote, data.decode("utf-8"))
        except UnicodeDecodeError:
            lines = None
    return {"document_sha256": hashlib.sha256(data).hexdigest(), "lines": list(lines) if lines else None}


def _document_name_problem(name: str) -> str | None:
    """Why a `source.document` name could point outside the seeds folder, or None."""
    if not name.strip():
        return "is blank"
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute() or PureWindowsPath(name).drive:
        return "must be relative to the seeds folder"
    if ".." in re.split(r"[/\\]", name):
        return "must not contain '..'"
    return None


NO_SOURCES = ("the archived source documents are absent ($CLAIMS_SEEDS_DIR unset and no ../shared/seeds): "
              "quotes are not checked against their sources")


def default_seeds_dir() -> Path | None:
    """Where the archived source documents live: $CLAIMS_SEEDS_DIR, else ../shared/seeds."""
    configured = os.environ.get("CLAIMS_SEEDS_DIR")
    if configured:
        return Path(configured)
    candidate = Path(__file__).resolve().parent.parent.parent / "shared" / "seeds"
    return candidate if candidate.is_dir() else None


def check_quote(entry: Entry, seeds_dir: Path) -> None:
    """Raise LedgerError unless the entry's quote appears (whitespace-normalised) in its source document."""
    if entry.quote is None or entry.source is None:
        return
    where = f"{entry.path}: {entry.kind} '{entry.id}'"
    if entry.source.document is None:
        raise LedgerError(f"{where}: field 'source': names no 'document' to check the quote against")
    document = seeds_dir / entry.source.document
    # The name is already relative and free of '..'; resolving also catches a symlink pointing out.
    if not document.resolve().is_relative_to(seeds_dir.resolve()):
        raise LedgerError(f"{where}: field 'source': document {document} lies outside {seeds_dir}")
    if not document.is_file():
        raise LedgerError(f"{where}: field 'source': document {document} not found")
    try:
        text = document.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise LedgerError(f"{where}: field 'source': document {document} is not UTF-8 text ({error.reason} "
                          f"at byte {error.start})") from None
    if normalise_text(entry.quote) not in normalise_text(text):
        raise LedgerError(f"{where}: field 'quote': not found in {document}: {entry.quote[:80]!r}")


def duplicate_ids(ids: Iterable[str]) -> list[str]:
    """The ids that occur more than once, sorted; one pass, so a ledger of thousands of entries is quick."""
    counts = collections.Counter(ids)
    return sorted(identifier for identifier, count in counts.items() if count > 1)


def load_ledger(path: Path, seeds_dir: Path | None = None) -> list[Entry]:
    """Load and validate one ledger file. With `seeds_dir`, also check every quote against it."""
    path = Path(path)
    where = _shown(str(path))
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise LedgerError(f"{where}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    except tomllib.TOMLDecodeError as error:
        raise LedgerError(f"{where}: not valid TOML: {error}") from None
    except RecursionError:  # tomllib parses nested arrays and tables recursively
        raise LedgerError(f"{where}: not valid TOML: arrays or tables nested too deeply") from None
    unknown = sorted(set(data) - {"experiment", "claim", "finding"})  # a list's repr escapes any newline in a key
    if unknown:
        raise LedgerError(f"{where}: unknown top-level table(s) {unknown}; use [[experiment]], [[claim]] and [[finding]]")
    tables = {}
    for kind in ("experiment", "claim", "finding"):
        tables[kind] = data.get(kind, [])
        if not isinstance(tables[kind], list) or not all(isinstance(raw, dict) for raw in tables[kind]):
            raise LedgerError(f"{where}: '{kind}' must be an array of tables ([[{kind}]]), "
                              f"got {_type_name(tables[kind])}")
    experiments: dict[str, Experiment] = {}
    for index, raw in enumerate(tables["experiment"]):
        experiment = _EntryValidator(path, "experiment", index, raw).validate_experiment()
        if experiment.id in experiments:
            raise LedgerError(f"{where}: experiment '{experiment.id}': field 'id': used more than once")
        experiments[experiment.id] = experiment
    entries: list[Entry] = []
    for kind in ("claim", "finding"):
        for index, raw in enumerate(tables[kind]):
            entries.append(_EntryValidator(path, kind, index, raw, experiments).validate())
    duplicates = duplicate_ids(entry.id for entry in entries)
    if duplicates:
        raise LedgerError(f"{where}: entry '{duplicates[0]}': field 'id': used more than once")
    unused = sorted(set(experiments) - {entry.experiment for entry in entries})
    if unused:
        raise LedgerError(f"{where}: experiment '{unused[0]}': no claim or finding names it")
    claim_ids = {e.id for e in entries if e.kind == "claim"}
    for entry in entries:
        if entry.kind == "finding" and entry.of is not None and entry.of not in claim_ids:
            raise LedgerError(f"{where}: finding '{entry.id}': field 'of': no claim {entry.of!r} in this file")
        if seeds_dir is not None:
            check_quote(entry, seeds_dir)
    return entries


def load_all(claims_dir: Path, seeds_dir: Path | None = None) -> list[Entry]:
    """Every entry of every ledger under claims_dir (claims/<system>/*.toml), ids unique overall."""
    entries: list[Entry] = []
    for path in sorted(Path(claims_dir).glob("*/*.toml")):
        entries.extend(load_ledger(path, seeds_dir))
    seen: dict[str, Path] = {}
    for entry in entries:
        if entry.id in seen:
            raise LedgerError(f"{entry.path}: entry '{entry.id}': field 'id': also used in {seen[entry.id]}")
        seen[entry.id] = entry.path
    return entries
