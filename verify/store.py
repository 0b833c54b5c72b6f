"""The results store: one SQLite file holding every finished run and every verdict.

Each run is committed in its own transaction the moment it finishes, so an interrupted session
loses nothing already finished. Results export to and import from JSON so that CPU and CUDA results
from different machines merge into one report (format in docs/CONTRACTS.md). An export is checked
against that format as a whole before anything of it is used, and imported in one transaction:
a bad file is one line naming the file and the record, and leaves the store as it was.
"""

from __future__ import annotations

import json
import math
import os
import reprlib
import secrets
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

from verify.ledger import SEED_LIMIT
from verify.verdicts import COMPARISONS, MISSING, VERDICTS

EXPORT_FORMAT = "claims-harness-results/1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_key TEXT PRIMARY KEY,
    protocol TEXT NOT NULL,
    params TEXT NOT NULL,
    seed INTEGER NOT NULL,
    device TEXT NOT NULL,
    device_name TEXT NOT NULL,
    torch_version TEXT NOT NULL,
    code_version TEXT NOT NULL,
    outputs TEXT NOT NULL,
    wall_seconds REAL NOT NULL,
    created TEXT NOT NULL,
    threads INTEGER,
    seed_batched INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS verdicts (
    claim_id TEXT NOT NULL,
    device TEXT NOT NULL,
    torch_version TEXT NOT NULL,
    profile TEXT NOT NULL,
    record TEXT NOT NULL,
    created TEXT NOT NULL,
    PRIMARY KEY (claim_id, device, torch_version, profile)
);
"""


_INSERT_RUN = "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_INSERT_VERDICT = "INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?, ?, ?)"


def write_text_atomic(path: Path | str, text: str) -> Path:
    """Write `text` (UTF-8) to `path` through a temporary file in the same folder, renamed over it.

    A reader, or a session killed mid-write, sees the previous file or the new one, never a part:
    os.replace is atomic within one file system. The temporary file is created with the usual
    permissions (0o666 less the umask), as a plain write would.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with open(descriptor, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())  # the bytes reach the disk before the name points at them
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal values give equal bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


# Outputs a protocol measures with a clock (docs/CONTRACTS.md): never byte-identical between runs,
# and expected to differ between machines.
TIMING_SUFFIXES = ("_seconds", "_step_time")


def is_timing_output(name: str) -> bool:
    return name.endswith(TIMING_SUFFIXES)


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


@dataclass(frozen=True)
class Run:
    run_key: str
    protocol: str
    params: dict[str, Any]
    seed: int
    device: str
    device_name: str
    torch_version: str
    code_version: str
    outputs: dict[str, Any]
    wall_seconds: float
    created: str
    threads: int | None = None  # CPU threads the run used (part of its identity); None in old exports
    seed_batched: bool = False  # trained together with other seeds of its group (part of its identity)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class ResultsStore:
    """SQLite-backed store of runs (keyed by run identity) and verdict records."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as connection, connection:
            connection.executescript(_SCHEMA)
            _add_missing_columns(connection)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=60)

    # -- runs ----------------------------------------------------------------------------------

    def get_run(self, run_key: str) -> Run | None:
        with closing(self._connect()) as connection:
            row = connection.execute(
                "SELECT run_key, protocol, params, seed, device, device_name, torch_version, code_version,"
                " outputs, wall_seconds, created, threads, seed_batched FROM runs WHERE run_key = ?",
                (run_key,),
            ).fetchone()
        return None if row is None else _run_from_row(row)

    def put_run(self, run: Run) -> None:
        with closing(self._connect()) as connection, connection:
            connection.execute(_INSERT_RUN, _run_row(run))

    def runs(self) -> list[Run]:
        with closing(self._connect()) as connection:
            rows = connection.execute(
                "SELECT run_key, protocol, params, seed, device, device_name, torch_version, code_version,"
                " outputs, wall_seconds, created, threads, seed_batched FROM runs ORDER BY protocol, seed, device"
            ).fetchall()
        return [_run_from_row(row) for row in rows]

    def stored_keys(self, keys: Iterable[str]) -> set[str]:
        """Which of `keys` the store already holds (one query per 500 keys)."""
        wanted, found = list(keys), set()
        with closing(self._connect()) as connection:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start:start + 500]
                marks = ",".join("?" * len(chunk))
                found.update(row[0] for row in connection.execute(
                    f"SELECT run_key FROM runs WHERE run_key IN ({marks})", chunk))
        return found

    def identities(self) -> list[tuple[str, str, int, str, str, str, int | None, bool]]:
        """(protocol, canonical params, seed, device, torch, code, threads, seed batched) of every stored
        run, so a plan can say when runs it needs exist under another thread count or older code."""
        with closing(self._connect()) as connection:
            return [(*row[:7], bool(row[7])) for row in connection.execute(
                "SELECT protocol, params, seed, device, torch_version, code_version, threads, seed_batched FROM runs")]

    def wall_times(self) -> list[tuple[str, str, str, float, bool]]:
        """(protocol, canonical params, device, wall seconds, seed-batched) of every stored run, for time
        estimates."""
        with closing(self._connect()) as connection:
            return [(*row[:4], bool(row[4])) for row in connection.execute(
                "SELECT protocol, params, device, wall_seconds, seed_batched FROM runs")]

    def raw_outputs(self, run_key: str) -> str | None:
        """The stored outputs exactly as bytes-on-disk text (for determinism checks)."""
        with closing(self._connect()) as connection:
            row = connection.execute("SELECT outputs FROM runs WHERE run_key = ?", (run_key,)).fetchone()
        return None if row is None else row[0]

    # -- verdicts ------------------------------------------------------------------------------

    def put_verdict(self, record: dict[str, Any]) -> None:
        with closing(self._connect()) as connection, connection:
            connection.execute(_INSERT_VERDICT, _verdict_row(record))

    def inputs_missing(self) -> list[dict[str, Any]]:
        """The stored `not run` records whose session found an input absent ("input missing")."""
        with closing(self._connect()) as connection:
            rows = connection.execute("SELECT record FROM verdicts WHERE json_extract(record, '$.not_run') = ?",
                                      (MISSING,)).fetchall()
        return [json.loads(row[0]) for row in rows]

    def verdicts(self) -> list[dict[str, Any]]:
        with closing(self._connect()) as connection:
            rows = connection.execute("SELECT record FROM verdicts ORDER BY claim_id, device").fetchall()
        return [json.loads(row[0]) for row in rows]

    # -- exchange ------------------------------------------------------------------------------

    def export_json(self, path: Path | str) -> dict[str, Any]:
        document = {
            "format": EXPORT_FORMAT,
            "exported": now_iso(),
            "runs": [run.as_dict() for run in self.runs()],
            "verdicts": self.verdicts(),
        }
        write_text_atomic(path, json.dumps(document, indent=1, sort_keys=True, allow_nan=False) + "\n")
        return document

    def import_json(self, path: Path | str) -> tuple[int, int]:
        """Merge an exported file into this store; returns (runs, verdicts) imported."""
        return self.import_documents([read_export(path)])

    def import_documents(self, documents: list[dict[str, Any]]) -> tuple[int, int]:
        """Merge already checked exports (`read_export`) in one transaction: all of them or nothing."""
        runs = [Run(**run) for document in documents for run in document["runs"]]
        records = [record for document in documents for record in document["verdicts"]]
        with closing(self._connect()) as connection, connection:
            connection.executemany(_INSERT_RUN, map(_run_row, runs))
            connection.executemany(_INSERT_VERDICT, map(_verdict_row, records))
        return len(runs), len(records)


# -- the export format, checked ----------------------------------------------------------------

class ExportError(ValueError):
    """An exported results file that does not follow the format; one line naming file and record."""


# A check returns what is wrong with a value, or None.
Check = Callable[[Any], "str | None"]

# The report draws values on a linear axis: bounded magnitudes keep its span finite.
PLOT_LIMIT = 1e300
_MAX_DEPTH = 64  # nesting of any value; protocol outputs nest a few levels (matrices of lists)
_REPR = reprlib.Repr()  # short, one-line reprs of bad values for the messages
_REPR.maxstring = _REPR.maxother = 40
_shorten = _REPR.repr


def _got(value: Any) -> str:
    return f"got {type(value).__name__} {_shorten(value)}"


def _string(value: Any) -> str | None:
    return None if isinstance(value, str) else f"expected a string, {_got(value)}"


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"expected true or false, {_got(value)}"


def _is_number(value: Any) -> bool:
    # bool is an int subclass; an integer too large for a float cannot be formatted or plotted.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return abs(float(value)) <= PLOT_LIMIT
    except OverflowError:
        return False


def _number(value: Any) -> str | None:
    return None if _is_number(value) else f"expected a number of magnitude at most {PLOT_LIMIT:g}, {_got(value)}"


def _non_negative(value: Any) -> str | None:
    return _number(value) or (f"must be >= 0, got {value!r}" if value < 0 else None)


def _integer(low: int, high: int) -> Check:
    def check(value: Any) -> str | None:
        if isinstance(value, int) and not isinstance(value, bool) and low <= value < high:
            return None
        return f"expected an integer in {low} .. {high - 1}, {_got(value)}"
    return check


def _choice(*allowed: str) -> Check:
    def check(value: Any) -> str | None:
        return None if value in allowed else f"expected one of {', '.join(map(repr, allowed))}, {_got(value)}"
    return check


def _optional(inner: Check) -> Check:
    def check(value: Any) -> str | None:
        return None if value is None else inner(value)
    return check


def _list_of(inner: Check, length: int | None = None) -> Check:
    def check(value: Any) -> str | None:
        if not isinstance(value, list):
            return f"expected a list, {_got(value)}"
        if length is not None and len(value) != length:
            return f"expected a list of {length}, got {len(value)} item(s)"
        for index, item in enumerate(value):
            problem = inner(item)
            if problem:
                return f"item {index}: {problem}"
        return None
    return check


def _object(required: dict[str, Check], optional: dict[str, Check] | None = None, *, closed: bool = True) -> Check:
    """An object with these fields; `closed`: no others (a run's fields are `Run`'s, nothing else)."""
    optional = optional or {}

    def check(value: Any) -> str | None:
        if not isinstance(value, dict):
            return f"expected an object, {_got(value)}"
        for name in required:
            if name not in value:
                return f"field {name!r}: missing"
        if closed:
            unknown = sorted(set(value) - set(required) - set(optional))
            if unknown:
                return f"field {_shorten(unknown[0])}: unknown field"
        for name, inner in (*required.items(), *optional.items()):
            problem = inner(value[name]) if name in value else None
            if problem:
                return f"field {name!r}: {problem}"
        return None
    return check


def _json_object(value: Any) -> str | None:
    # Content is free (a protocol's params); that it is plain JSON was checked for the whole document.
    return None if isinstance(value, dict) else f"expected an object, {_got(value)}"


def _matrix(value: Any) -> str | None:
    if not isinstance(value, list) or not value:
        return None  # the report draws only non-empty lists; anything else is another output
    return _list_of(_list_of(_optional(_number)))(value)


def _outputs(value: Any) -> str | None:
    """A protocol's outputs, with the conventions the report reads (docs/CONTRACTS.md)."""
    if not isinstance(value, dict):
        return f"expected an object, {_got(value)}"
    if value.get("dataset_files") is not None and not isinstance(value["dataset_files"], dict):
        return f"field 'dataset_files': expected an object of file -> sha256, {_got(value['dataset_files'])}"
    for name, item in value.items():
        problem = _matrix(item) if name.endswith("accuracy_matrix") else None
        if problem:
            return f"field {name!r}: a matrix of numbers or nulls: {problem}"
    return None


def _claimed(value: Any) -> str | None:
    return _list_of(_number, 2)(value) if isinstance(value, list) else _number(value)


RUN_FIELDS: dict[str, Check] = {
    "run_key": _string, "protocol": _string, "params": _json_object, "seed": _integer(0, SEED_LIMIT),
    "device": _string, "device_name": _string, "torch_version": _string, "code_version": _string,
    "outputs": _outputs, "wall_seconds": _non_negative, "created": _string,
}
# Absent from exports written before runs recorded them; Run's defaults apply.
RUN_OPTIONAL_FIELDS: dict[str, Check] = {"threads": _optional(_integer(1, 2**31)), "seed_batched": _boolean}
_RUN = _object(RUN_FIELDS, RUN_OPTIONAL_FIELDS)

_VERDICT = _object(
    {"claim_id": _string, "kind": _choice("claim", "finding"), "of": _optional(_string), "system": _string,
     "title": _string, "quote": _optional(_string),
     "source": _optional(_object({"repository": _string, "file": _string},
                                 {"document": _optional(_string), "document_sha256": _optional(_string),
                                  "lines": _optional(_list_of(_integer(1, 2**31), 2))})),
     "metric": _string, "metric_args": _json_object,
     "claimed": _optional(_claimed),
     "comparison": _optional(_choice(*COMPARISONS)), "tolerance": _non_negative,
     "tolerance_origin": _optional(_string), "protocol": _string, "params": _json_object,
     "deviation": _optional(_string),
     "table": _optional(_object({"name": _string, "row": _string, "column": _string})),
     "tier": _string, "profile": _choice("smoke", "full"), "verdict": _choice(*VERDICTS),
     "direction": _optional(_choice("above", "below")), "reason": _string,
     "seeds": _list_of(_integer(0, SEED_LIMIT)), "values": _list_of(_number), "mean": _optional(_number),
     "interval": _optional(_list_of(_number, 2)), "interval_method": _optional(_string),
     "device": _string, "device_name": _string, "torch_version": _string, "code_version": _string,
     "environment": _object({}, {"python": _optional(_string), "platform": _optional(_string),
                                 "git_commit": _optional(_string)}, closed=False),
     "run_keys": _list_of(_string), "created": _string},
    {"device_independent": _boolean, "expected": _string, "stale": _boolean, "baseline": _optional(_string)},
    # Fields a newer harness adds are kept: the report reads only the ones above.
    closed=False,
)


def _list(value: Any) -> str | None:
    return None if isinstance(value, list) else f"expected a list, {_got(value)}"


# The records are checked one by one after this, so that an error can name the record.
_EXPORT = _object({"exported": _string, "runs": _list, "verdicts": _list}, closed=False)


def _plain_json_problem(record: dict[str, Any]) -> str | None:
    """What no schema field says: nothing nests deeper than _MAX_DEPTH, every number is finite
    (Python's JSON reader takes NaN, Infinity and 1e400, which canonical JSON refuses), and every
    string and key is Unicode that UTF-8 can store (a JSON escape such as \\ud800 is a lone surrogate)."""
    pending = [(value, 1, name) for name, value in record.items()]
    for name in record:
        pending.append((name, 1, name))
    while pending:
        value, depth, field_name = pending.pop()
        if depth > _MAX_DEPTH:
            return f"field {_shorten(field_name)}: nested deeper than {_MAX_DEPTH} levels"
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return f"field {_shorten(field_name)}: text {_shorten(value)} is not valid Unicode"
        elif isinstance(value, float) and not math.isfinite(value):
            return f"field {_shorten(field_name)}: {value} is not a number JSON allows"
        elif isinstance(value, dict):
            pending.extend((item, depth + 1, field_name) for pair in value.items() for item in pair)
        elif isinstance(value, list):
            pending.extend((item, depth + 1, field_name) for item in value)
    return None


def _record_label(kind: str, index: int, record: Any) -> str:
    if kind == "runs":
        key = record.get("run_key") if isinstance(record, dict) else None
        return f"run {index}" + (f" ({_shorten(key)})" if isinstance(key, str) else "")
    claim = record.get("claim_id") if isinstance(record, dict) else None
    device = record.get("device") if isinstance(record, dict) else None
    return f"verdict {index}" + (f" ({_shorten(claim)} on {_shorten(device)})" if isinstance(claim, str) else "")


def read_export(path: Path | str) -> dict[str, Any]:
    """Read an exported results file and check all of it against the format; raises ExportError
    (one line naming the file and the record) for anything the store or the report could not use."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ExportError(f"{path}: not a JSON results file: not UTF-8 ({error.reason} at byte {error.start})") from None
    try:
        document = json.loads(text)
    except RecursionError:
        raise ExportError(f"{path}: not a JSON results file: nested too deeply") from None
    except json.JSONDecodeError as error:
        raise ExportError(f"{path}: not a JSON results file: {error}") from None
    if not isinstance(document, dict) or document.get("format") != EXPORT_FORMAT:
        raise ExportError(f"{path}: not a results export (expected format {EXPORT_FORMAT!r})")
    problem = _EXPORT(document)
    if problem:
        raise ExportError(f"{path}: {problem}")
    for kind, check in (("runs", _RUN), ("verdicts", _VERDICT)):
        for index, record in enumerate(document[kind]):
            problem = check(record) or _plain_json_problem(record)
            if problem:
                raise ExportError(f"{path}: {_record_label(kind, index, record)}: {problem}")
    return document


def merge_verdicts(record_sets: Iterable[Iterable[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Union of verdict records; for the same (claim, device, torch, profile) the newest wins."""
    merged: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for records in record_sets:
        for record in records:
            key = (record["claim_id"], record["device"], record["torch_version"], record["profile"])
            if key not in merged or record["created"] >= merged[key]["created"]:
                merged[key] = record
    return sorted(merged.values(), key=lambda r: (r["system"], r["claim_id"], r["device"]))


def _run_row(run: Run) -> tuple:
    return (run.run_key, run.protocol, canonical_json(run.params), run.seed, run.device, run.device_name,
            run.torch_version, run.code_version, canonical_json(run.outputs), run.wall_seconds, run.created,
            run.threads, int(run.seed_batched))


def _verdict_row(record: dict[str, Any]) -> tuple:
    return (record["claim_id"], record["device"], record["torch_version"], record["profile"], canonical_json(record),
            record["created"])


def _run_from_row(row: tuple) -> Run:
    (run_key, protocol, params, seed, device, device_name, torch_version, code_version, outputs, wall, created,
     threads, seed_batched) = row
    return Run(
        run_key=run_key,
        protocol=protocol,
        params=json.loads(params),
        seed=seed,
        device=device,
        device_name=device_name,
        torch_version=torch_version,
        code_version=code_version,
        outputs=json.loads(outputs),
        wall_seconds=wall,
        created=created,
        threads=threads,
        seed_batched=bool(seed_batched),
    )


def _add_missing_columns(connection: sqlite3.Connection) -> None:
    """Stores written before runs recorded their thread count and batching get the columns added."""
    present = {row[1] for row in connection.execute("PRAGMA table_info(runs)")}
    if "threads" not in present:
        connection.execute("ALTER TABLE runs ADD COLUMN threads INTEGER")
    if "seed_batched" not in present:
        connection.execute("ALTER TABLE runs ADD COLUMN seed_batched INTEGER NOT NULL DEFAULT 0")
