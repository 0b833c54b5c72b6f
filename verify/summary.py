"""The verdicts as Markdown, led by the sources' own tables: per system, each source table rebuilt
with claimed beside measured and the verdict (parameter counts grouped into one line per table),
then the claims that sit in no table. ``python -m verify summary`` prints it (the README's verdict
section is this output)."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any, Iterable

from verify.report import claimed_text, natural_key, verdict_label

PARAMETER_COLUMNS = ("Params", "Parameters")


def measured_text(record: dict[str, Any]) -> str:
    """What was measured, as a reader needs it for the claim's kind; a dash when nothing ran."""
    if record["mean"] is None:
        return "–"
    values, n = record["values"], len(record["values"])
    if record.get("claim_kind") in ("universal", "exact") and n > 1 and min(values) != max(values):
        return f"{record['mean']:.4g} (seeds {min(values):.4g} to {max(values):.4g}, n={n})"
    text = f"{record['mean']:.4g}"
    if record["interval"] and record["interval"][0] != record["interval"][1]:
        text += f" [{record['interval'][0]:.4g}, {record['interval'][1]:.4g}]"
    if record.get("prediction_interval"):
        low, high = record["prediction_interval"]
        text += f", one run [{low:.4g}, {high:.4g}]"
    return text + f" (n={n})"


def _row(label: str, record: dict[str, Any]) -> str:
    return f"| {label} | {claimed_text(record)} | {measured_text(record)} | {verdict_label(record)} |"


def _parameter_line(records: list[dict[str, Any]]) -> str:
    counts = Counter(verdict_label(record) for record in records)
    misses = [f"{r['table']['row']} {measured_text(r)} vs {claimed_text(r)}"
              for r in records if verdict_label(r) not in ("reproduced",)]
    text = ", ".join(f"{n} {label}" for label, n in sorted(counts.items()))
    return f"| parameter counts ({len(records)} rows) | – | {text} | {'; '.join(misses) or 'all reproduced'} |"


def markdown(records: Iterable[dict[str, Any]], device: str = "cpu") -> str:
    newest: dict[str, dict[str, Any]] = {}
    for record in records:  # one record per claim: a full-profile verdict outranks a smoke one, then the newest
        if record["kind"] == "claim" and record["device"] == device:
            held = newest.get(record["claim_id"])
            if held is None or (record["profile"] == "full", record["created"]) > (held["profile"] == "full",
                                                                                    held["created"]):
                newest[record["claim_id"]] = record
    claims = list(newest.values())
    by_system: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in claims:
        by_system[record["system"]].append(record)
    lines: list[str] = []
    for system in sorted(by_system):
        records = by_system[system]
        counts = Counter(verdict_label(r).split(" (")[0] if r["verdict"] == "not reproduced" else verdict_label(r)
                         for r in records)
        lines.append(f"#### {system}: " + ", ".join(f"{n} {label}" for label, n in sorted(counts.items())))
        lines.append("")
        tables: dict[str, list[dict[str, Any]]] = defaultdict(list)
        loose = []
        for record in records:
            (tables[record["table"]["name"]] if record["table"] else loose).append(record)
        for name in sorted(tables, key=natural_key):
            rows = sorted(tables[name], key=lambda r: (natural_key(r["table"]["row"]), natural_key(r["table"]["column"])))
            unmeasured = {verdict_label(r) for r in rows if r["verdict"] == "not run"}
            if len(unmeasured) == 1 and all(r["verdict"] == "not run" for r in rows):
                lines += [f"*{name}*: {len(rows)} claims, all {unmeasured.pop()}", ""]
                continue
            lines += [f"*{name}*", "", "| row · column | claimed | measured mean [95% interval] (n) | verdict |",
                      "| --- | --- | --- | --- |"]
            parameters = [r for r in rows if r["table"]["column"] in PARAMETER_COLUMNS]
            for record in rows:
                if record not in parameters:
                    lines.append(_row(f"{record['table']['row']} · {record['table']['column']}", record))
            if parameters:
                lines.append(_parameter_line(parameters))
            lines.append("")
        if loose:
            lines += ["*Other claims*", "", "| claim | claimed | measured mean [95% interval] (n) | verdict |",
                      "| --- | --- | --- | --- |"]
            lines += [_row(record["claim_id"], record) for record in sorted(loose, key=lambda r: r["claim_id"])]
            lines.append("")
    return "\n".join(lines)
