"""The baseline: the last measured verdict of each entry per device and profile, outside the ledger.

The ledger says what a source claims; `results/baseline.json` says what the harness last measured,
the way snapshot tools keep their snapshots. `pytest claims/` compares each verdict with it: the
same verdict passes (or xfails, for a claim that does not reproduce), a different one FAILS naming
both, and an entry with no baseline verdict yet is reported as new. `--update-baseline` records this
session's verdicts instead of comparing them. `not run` is never recorded (it says nothing about the
claim), so a missing dataset skips without erasing what was measured where it was present.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from verify.store import write_text_atomic

BASELINE_FORMAT = "claims-harness-baseline/1"
SAME, CHANGED, NEW = "same", "changed", "new"


class BaselineError(ValueError):
    """A baseline file that cannot be read (one line naming it)."""


def slot(record: dict[str, Any]) -> str:
    """Where a verdict record lives in the baseline: "<device>/<profile>"."""
    return f"{record['device']}/{record['profile']}"


def label(record: dict[str, Any]) -> str:
    """The verdict as the baseline stores it: "reproduced", "not reproduced (above)", "measured", ..."""
    from verify.report import verdict_label

    return verdict_label(record)


def load(path: Path) -> dict[str, dict[str, str]]:
    """claim id -> {"<device>/<profile>": verdict}; an absent file is an empty baseline."""
    if not path.exists():
        return {}
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BaselineError(f"baseline {path}: cannot be read: {error}") from None
    if not isinstance(document, dict) or document.get("format") != BASELINE_FORMAT:
        raise BaselineError(f"baseline {path}: not a baseline file (expected format {BASELINE_FORMAT!r})")
    verdicts = document.get("verdicts")
    if not isinstance(verdicts, dict) or not all(
            isinstance(slots, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in slots.items())
            for slots in verdicts.values()):
        raise BaselineError(f"baseline {path}: 'verdicts' must map claim ids to {{\"device/profile\": verdict}}")
    return verdicts


def compare(record: dict[str, Any], baseline: dict[str, dict[str, str]]) -> tuple[str, str | None]:
    """(SAME, CHANGED or NEW, the baseline's verdict or None) for a measured record."""
    previous = baseline.get(record["claim_id"], {}).get(slot(record))
    if previous is None:
        return NEW, None
    return (SAME if previous == label(record) else CHANGED), previous


def updated(baseline: dict[str, dict[str, str]], records: Iterable[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """The baseline with these records' verdicts recorded (`not run` records leave their slot as it was)."""
    result = {claim: dict(slots) for claim, slots in baseline.items()}
    for record in records:
        if record["verdict"] != "not run":
            result.setdefault(record["claim_id"], {})[slot(record)] = label(record)
    return result


def write(path: Path, baseline: dict[str, dict[str, str]]) -> Path:
    """Sorted and one verdict per line, so that a change reads as a one-line diff."""
    document = {"format": BASELINE_FORMAT,
                "verdicts": {claim: dict(sorted(slots.items())) for claim, slots in sorted(baseline.items()) if slots}}
    return write_text_atomic(path, json.dumps(document, indent=1, sort_keys=False) + "\n")
