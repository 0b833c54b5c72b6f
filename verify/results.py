"""Verdicts as pandas DataFrames, for analysis outside the report.

    from verify import results
    results.entries()                       # one row per entry and device (reports/verdicts.json)
    results.seeds("cuda-export.json")       # one row per seed's value

A source is a verdicts JSON (the list pytest writes), an export (``python -m verify export``) or a
results store (``.sqlite``). Several records of the same entry, device, torch version and profile
keep the newest. Entries that did not run have a row in ``entries`` (verdict ``not run``, no mean)
and no rows in ``seeds``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from verify.store import ResultsStore, merge_verdicts, read_export

DEFAULT_SOURCE = "reports/verdicts.json"

ENTRY_COLUMNS = ("claim_id", "kind", "of", "system", "experiment", "claim_kind", "title", "metric", "claimed",
                 "claimed_high", "comparison", "tolerance", "verdict", "label", "category", "direction", "mean",
                 "interval_low", "interval_high", "prediction_low", "prediction_high", "n_seeds", "device",
                 "device_name", "profile", "tier", "torch_version", "code_version", "created", "reason")
SEED_COLUMNS = ("claim_id", "kind", "system", "experiment", "device", "profile", "torch_version", "seed", "value",
                "run_key")


def records(source: Path | str = DEFAULT_SOURCE) -> list[dict[str, Any]]:
    """The verdict records of a verdicts JSON, an export or a results store, newest per entry and device."""
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"no results at {path}")
    if path.suffix in (".sqlite", ".db"):
        found = ResultsStore(path).verdicts()
    else:
        document = json.loads(path.read_text(encoding="utf-8"))
        found = document if isinstance(document, list) else read_export(path)["verdicts"]
    return merge_verdicts([found])


def _pair(values: list[float] | None) -> tuple[float | None, float | None]:
    return (None, None) if not values else (values[0], values[1])


def entries(source: Path | str = DEFAULT_SOURCE) -> pd.DataFrame:
    """One row per entry and device: claimed, kind, verdict, mean, intervals and number of seeds."""
    from verify.report import verdict_category, verdict_label

    rows = []
    for record in records(source):
        claimed = record["claimed"]
        low, high = _pair(claimed) if isinstance(claimed, list) else (claimed, None)
        interval_low, interval_high = _pair(record["interval"])
        prediction_low, prediction_high = _pair(record.get("prediction_interval"))
        rows.append({**{column: record.get(column) for column in ENTRY_COLUMNS},
                     "claimed": low, "claimed_high": high, "label": verdict_label(record),
                     "category": verdict_category(record), "interval_low": interval_low,
                     "interval_high": interval_high, "prediction_low": prediction_low,
                     "prediction_high": prediction_high, "n_seeds": len(record["values"])})
    return pd.DataFrame(rows, columns=list(ENTRY_COLUMNS))


def seeds(source: Path | str = DEFAULT_SOURCE) -> pd.DataFrame:
    """One row per measured seed: the entry, device, seed and the metric's value on that seed's run."""
    rows = []
    for record in records(source):
        keys = record["run_keys"] if len(record["run_keys"]) == len(record["values"]) else [None] * len(record["values"])
        for seed, value, key in zip(record["seeds"], record["values"], keys):
            rows.append({**{column: record.get(column) for column in SEED_COLUMNS}, "seed": seed, "value": value,
                         "run_key": key})
    return pd.DataFrame(rows, columns=list(SEED_COLUMNS))
