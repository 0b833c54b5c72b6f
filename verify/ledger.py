"""The ledger: claims and findings as data, validated on load.

One TOML file per system under ``claims/<system>/``. Each ``[[claim]]`` quotes a documented claim
verbatim and names how to measure it; each ``[[finding]]`` is a control or mechanism measurement
shown under its claim. A malformed entry raises :class:`LedgerError` with a one-line message that
names the file, the entry and the field.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

from verify import metrics
from verify.verdicts import COMPARISONS, EXPECTABLE

TIERS = ("ci", "full")
DEVICES = ("any", "cuda")
INTERVAL_METHODS = ("t", "bootstrap")
_PROTOCOL_PATTERN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


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
class Entry:
    """One claim or finding of the ledger."""

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
    expected: str = "measured"
    metric_args: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    smoke_params: dict[str, Any] = field(default_factory=dict)
    datasets: tuple[str, ...] = ()
    deviation: str | None = None
    table: TableCell | None = None
    interval: str = "t"
    notes: str | None = None

    def params_for(self, profile: str) -> dict[str, Any]:
        """Protocol parameters for a profile: a full-tier entry runs its smoke size under `smoke`."""
        if profile == "smoke" and self.tier == "full":
            return {**self.params, **self.smoke_params}
        return dict(self.params)

    def runs_full_protocol(self, profile: str) -> bool:
        return profile == "full" or self.tier == "ci"


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
    "expected": ((str,), True, False),
    "datasets": ((list,), False, False),
    "deviation": ((str,), False, False),
    "table": ((dict,), False, False),
    "interval": ((str,), False, False),
    "notes": ((str,), False, False),
}


def _type_name(value: Any) -> str:
    return type(value).__name__


class _EntryValidator:
    def __init__(self, path: Path, kind: str, index: int, raw: dict[str, Any]):
        self.path, self.kind, self.raw = path, kind, raw
        self.label = f"{kind} '{raw['id']}'" if isinstance(raw.get("id"), str) else f"{kind} #{index + 1}"

    def fail(self, field_name: str, problem: str) -> LedgerError:
        return LedgerError(f"{self.path}: {self.label}: field '{field_name}': {problem}")

    def validate(self) -> Entry:
        raw = self.raw
        for name in raw:
            if name not in _FIELDS:
                raise self.fail(name, f"unknown field (known: {', '.join(sorted(_FIELDS))})")
        for name, (types, for_claim, for_finding) in _FIELDS.items():
            required = for_claim if self.kind == "claim" else for_finding
            if name not in raw:
                if required:
                    raise self.fail(name, "missing")
                continue
            value = raw[name]
            # bool is an int subclass: a `true` where a number belongs is a type error.
            if isinstance(value, bool) or not isinstance(value, types):
                wanted = " or ".join(t.__name__ for t in types)
                raise self.fail(name, f"expected {wanted}, got {_type_name(value)} {value!r}")
        if self.kind == "finding" and ("claimed" in raw) != ("comparison" in raw):
            raise self.fail("claimed", "a finding gives both 'claimed' and 'comparison', or neither")
        return Entry(
            kind=self.kind,
            id=self._identifier(),
            system=raw["system"],
            title=raw.get("title", raw["id"]),
            quote=raw.get("quote"),
            source=self._source(),
            of=raw.get("of"),
            metric=self._metric(),
            metric_args=dict(raw.get("metric_args", {})),
            claimed=self._claimed(),
            comparison=self._comparison(),
            tolerance=self._tolerance(),
            tolerance_origin=raw.get("tolerance_origin"),
            protocol=self._protocol(),
            params=dict(raw.get("params", {})),
            smoke_params=dict(raw.get("smoke_params", {})),
            seeds=self._seeds(),
            tier=self._choice("tier", TIERS),
            device=self._choice("device", DEVICES),
            expected=self._expected(),
            datasets=self._datasets(),
            deviation=raw.get("deviation"),
            table=self._table(),
            interval=self._choice("interval", INTERVAL_METHODS, default="t"),
            notes=raw.get("notes"),
            path=self.path,
        )

    def _identifier(self) -> str:
        value = self.raw["id"]
        if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", value):
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
        return Source(value["repository"], value["file"], value.get("document"))

    def _metric(self) -> str:
        name = self.raw["metric"]
        if name not in metrics.REGISTRY:
            raise self.fail("metric", f"unknown metric {name!r} (known: {', '.join(sorted(metrics.REGISTRY))})")
        return name

    def _claimed(self) -> float | tuple[float, float] | None:
        if "claimed" not in self.raw:
            return None
        value = self.raw["claimed"]
        if isinstance(value, list):
            if len(value) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
                raise self.fail("claimed", f"a range is two numbers [low, high], got {value!r}")
            low, high = float(value[0]), float(value[1])
            if low > high:
                raise self.fail("claimed", f"range low {low} exceeds high {high}")
            return (low, high)
        return float(value)

    def _comparison(self) -> str | None:
        if "comparison" not in self.raw:
            return None
        value = self._choice("comparison", COMPARISONS)
        if isinstance(self._claimed(), tuple) and value != "equal":
            raise self.fail("comparison", f"a claimed range needs comparison 'equal', got {value!r}")
        return value

    def _tolerance(self) -> float:
        value = float(self.raw.get("tolerance", 0.0))
        if value < 0:
            raise self.fail("tolerance", f"must be >= 0, got {value}")
        return value

    def _protocol(self) -> str:
        value = self.raw["protocol"]
        if not _PROTOCOL_PATTERN.match(value):
            raise self.fail("protocol", f"{value!r} is not 'package.module:function'")
        return value

    def _seeds(self) -> tuple[int, ...]:
        value = self.raw["seeds"]
        if not value or not all(isinstance(s, int) and not isinstance(s, bool) for s in value):
            raise self.fail("seeds", f"expected a non-empty list of integers, got {value!r}")
        if len(set(value)) != len(value):
            raise self.fail("seeds", f"duplicate seeds in {value!r}")
        return tuple(value)

    def _expected(self) -> str:
        if self.kind == "finding" and "expected" not in self.raw:
            return "measured" if "claimed" not in self.raw else "reproduced"
        value = self.raw["expected"]
        if value not in EXPECTABLE:
            raise self.fail("expected", f"{value!r} is not one of {', '.join(EXPECTABLE)}")
        return value

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


def _normalise_text(text: str) -> str:
    return " ".join(text.split())


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
    if not document.is_file():
        raise LedgerError(f"{where}: field 'source': document {document} not found")
    if _normalise_text(entry.quote) not in _normalise_text(document.read_text(encoding="utf-8")):
        raise LedgerError(f"{where}: field 'quote': not found in {document}: {entry.quote[:80]!r}")


def load_ledger(path: Path, seeds_dir: Path | None = None) -> list[Entry]:
    """Load and validate one ledger file. With `seeds_dir`, also check every quote against it."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise LedgerError(f"{path}: not valid TOML: {error}") from None
    unknown = set(data) - {"claim", "finding"}
    if unknown:
        raise LedgerError(f"{path}: unknown top-level table(s) {sorted(unknown)}; use [[claim]] and [[finding]]")
    entries: list[Entry] = []
    for kind in ("claim", "finding"):
        for index, raw in enumerate(data.get(kind, [])):
            entries.append(_EntryValidator(path, kind, index, raw).validate())
    ids = [e.id for e in entries]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise LedgerError(f"{path}: entry '{duplicates[0]}': field 'id': used more than once")
    claim_ids = {e.id for e in entries if e.kind == "claim"}
    for entry in entries:
        if entry.kind == "finding" and entry.of is not None and entry.of not in claim_ids:
            raise LedgerError(f"{path}: finding '{entry.id}': field 'of': no claim '{entry.of}' in this file")
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
