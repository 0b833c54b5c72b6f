"""The HTML report: claimed against measured, per device, with the verdict and its evidence.

Static and self-contained (no network, no external assets). Every string from ledgers and results
is escaped by the template engine, so a quote containing markup shows as text.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

from jinja2 import Environment, PackageLoader, select_autoescape

from verify.store import merge_verdicts
from verify.verdicts import Verdict

_ENVIRONMENT = Environment(
    loader=PackageLoader("verify", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def verdict_label(record: dict[str, Any]) -> str:
    return Verdict(record["verdict"], record["direction"], record["reason"]).label


def _format_number(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def _claimed_text(record: dict[str, Any]) -> str:
    claimed = record["claimed"]
    if claimed is None:
        return "-"
    prefix = {"at_least": "≥ ", "at_most": "≤ ", "exact": "exactly "}.get(record["comparison"] or "", "")
    body = f"{claimed[0]:.6g} – {claimed[1]:.6g}" if isinstance(claimed, list) else f"{claimed:.6g}"
    if record["tolerance"] and record["comparison"] == "equal":
        body += f" ± {record['tolerance']:.2g}"
    return prefix + body


def build_rows(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per claim or finding, with one cell per device (latest torch version per device)."""
    by_claim: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    first: dict[str, dict[str, Any]] = {}
    for record in merge_verdicts([records]):
        first.setdefault(record["claim_id"], record)
        previous = by_claim[record["claim_id"]].get(record["device"])
        if previous is None or record["created"] >= previous["created"]:
            by_claim[record["claim_id"]][record["device"]] = record
    rows = []
    for claim_id, record in first.items():
        cells = {
            device: {
                "mean": _format_number(r["mean"]),
                "interval": "-" if r["interval"] is None else f"[{r['interval'][0]:.4g}, {r['interval'][1]:.4g}]",
                "values": ", ".join(f"{v:.4g}" for v in r["values"]),
                "verdict": verdict_label(r),
                "badge": r["verdict"].replace(" ", "-"),
                "reason": r["reason"],
                "profile": r["profile"],
                "torch_version": r["torch_version"],
                "device_name": r["device_name"],
            }
            for device, r in by_claim[claim_id].items()
        }
        verdicts = {cell["verdict"] for cell in cells.values()}
        rows.append({"record": record, "claimed": _claimed_text(record), "cells": cells, "devices_differ": len(verdicts) > 1})
    return rows


def write_report(records: Iterable[dict[str, Any]], path: Path | str) -> Path:
    """Render the report for these verdict records to `path` and return it."""
    rows = build_rows(records)
    devices = sorted({device for row in rows for device in row["cells"]}, key=lambda d: (d != "cpu", d))
    html = _ENVIRONMENT.get_template("report.html").render(rows=rows, devices=devices)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return path
