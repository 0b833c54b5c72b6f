"""The results store: one SQLite file holding every finished run and every verdict.

Each run is committed in its own transaction the moment it finishes, so an interrupted session
loses nothing already finished. Results export to and import from JSON so that CPU and CUDA results
from different machines merge into one report (format in docs/CONTRACTS.md).
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

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


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal values give equal bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


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
            connection.execute(
                "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run.run_key,
                    run.protocol,
                    canonical_json(run.params),
                    run.seed,
                    run.device,
                    run.device_name,
                    run.torch_version,
                    run.code_version,
                    canonical_json(run.outputs),
                    run.wall_seconds,
                    run.created,
                    run.threads,
                    int(run.seed_batched),
                ),
            )

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

    def wall_times(self) -> list[tuple[str, str, str, float]]:
        """(protocol, canonical params, device, wall seconds) of every stored run, for time estimates."""
        with closing(self._connect()) as connection:
            return connection.execute("SELECT protocol, params, device, wall_seconds FROM runs").fetchall()

    def raw_outputs(self, run_key: str) -> str | None:
        """The stored outputs exactly as bytes-on-disk text (for determinism checks)."""
        with closing(self._connect()) as connection:
            row = connection.execute("SELECT outputs FROM runs WHERE run_key = ?", (run_key,)).fetchone()
        return None if row is None else row[0]

    # -- verdicts ------------------------------------------------------------------------------

    def put_verdict(self, record: dict[str, Any]) -> None:
        with closing(self._connect()) as connection, connection:
            connection.execute(
                "INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?, ?, ?)",
                (
                    record["claim_id"],
                    record["device"],
                    record["torch_version"],
                    record["profile"],
                    canonical_json(record),
                    record["created"],
                ),
            )

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
        Path(path).write_text(json.dumps(document, indent=1, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8")
        return document

    def import_json(self, path: Path | str) -> tuple[int, int]:
        """Merge an exported file into this store; returns (runs, verdicts) imported."""
        document = read_export(path)
        for run in document["runs"]:
            self.put_run(Run(**run))
        for record in document["verdicts"]:
            self.put_verdict(record)
        return len(document["runs"]), len(document["verdicts"])


def read_export(path: Path | str) -> dict[str, Any]:
    """Read and check an exported results file."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not a JSON results file: {error}") from None
    if not isinstance(document, dict) or document.get("format") != EXPORT_FORMAT:
        raise ValueError(f"{path}: not a results export (expected format {EXPORT_FORMAT!r})")
    for key in ("runs", "verdicts"):
        if not isinstance(document.get(key), list):
            raise ValueError(f"{path}: field {key!r} must be a list")
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
