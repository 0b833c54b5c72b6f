"""The verdicts as Markdown, led by the sources' own tables: per system, each source table rebuilt
with claimed beside measured and the verdict (parameter counts grouped into one line per table),
then the claims that sit in no table, each device's measurement and verdict side by side.
``python -m verify summary`` prints it; ``--readme README.md`` writes it, from the reference bundle,
between the README's markers, and ``--check`` fails when the README's block is not what it would write."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any, Iterable

from verify.report import claimed_text, natural_key, verdict_label
from verify.verdicts import PENDING

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


DEVICE_TITLES = {"cpu": "CPU", "cuda": "CUDA"}


def _shared_with_cpu(device: str, cpu: dict[str, Any] | None) -> bool:
    """Whether this device's verdict is the CPU's: a device-independent protocol runs once, on CPU."""
    return device != "cpu" and cpu is not None and bool(cpu.get("device_independent"))


def _verdict_text(record: dict[str, Any] | None, device: str, cpu: dict[str, Any] | None) -> str:
    if _shared_with_cpu(device, cpu):
        return "as CPU (device-independent)"
    if record is None:
        return "–"
    return verdict_label(record) + (" (stale)" if record.get("stale") else "")


def _cells(records: dict[str, dict[str, Any]], devices: tuple[str, ...]) -> str:
    cells = []
    for device in devices:
        record = records.get(device)
        shown = record is not None and not _shared_with_cpu(device, records.get("cpu"))
        cells += [measured_text(record) if shown else "–", _verdict_text(record, device, records.get("cpu"))]
    return " | ".join(cells)


def _row(label: str, records: dict[str, dict[str, Any]], devices: tuple[str, ...]) -> str:
    first = next(iter(records.values()))
    return f"| {label} | {claimed_text(first)} | {_cells(records, devices)} |"


def _header(first: str, devices: tuple[str, ...]) -> list[str]:
    cells = " | ".join(f"{DEVICE_TITLES.get(d, d)} measured mean [95% interval] (n) | {DEVICE_TITLES.get(d, d)} verdict"
                       for d in devices)
    return [f"| {first} | claimed | {cells} |", "| --- | --- |" + " --- | --- |" * len(devices)]


def _parameter_line(rows: list[dict[str, dict[str, Any]]], devices: tuple[str, ...]) -> str:
    cells = []
    for device in devices:
        records = [row[device] for row in rows if device in row]
        counts = Counter(verdict_label(record) for record in records)
        misses = [f"{r['table']['row']} {measured_text(r)} vs {claimed_text(r)}"
                  for r in records if verdict_label(r) != "reproduced" and r["verdict"] != "not run"]
        cells.append(", ".join(f"{n} {label}" for label, n in sorted(counts.items())) or "–")
        cells.append("; ".join(misses) or ("all reproduced" if counts.get("reproduced") == len(records) else "–"))
    return f"| parameter counts ({len(rows)} rows) | – | " + " | ".join(cells) + " |"


def _preferred(held: dict[str, Any] | None, record: dict[str, Any]) -> bool:
    from verify.report import _preference

    return held is None or _preference(record) > _preference(held)


def _chosen(records: Iterable[dict[str, Any]], devices: tuple[str, ...]) -> dict[str, dict[str, dict[str, Any]]]:
    """claim id -> device -> the record the report shows for it."""
    chosen: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for record in records:
        if record["kind"] == "claim" and record["device"] in devices:
            if _preferred(chosen[record["claim_id"]].get(record["device"]), record):
                chosen[record["claim_id"]][record["device"]] = record
    return chosen


def waiting(records: Iterable[dict[str, Any]], devices: tuple[str, ...] = ("cpu", "cuda"),
            datasets: dict[str, list[str]] | None = None) -> str:
    """The claims each device has no full-protocol verdict for yet (of either tier: a ci-tier claim
    that no session on that device ran waits too), by protocol and the datasets the ledger says it
    reads (`datasets`: claim id -> names), or by the missing input the reason names."""
    chosen = _chosen(records, devices)
    lines = ["#### Still waiting for a full-protocol verdict", ""]
    for device in devices:
        pending: dict[str, set[str]] = defaultdict(set)
        missing: dict[str, set[str]] = defaultdict(set)
        for claim_id, row in chosen.items():
            record = row.get(device)
            if record is None or record["verdict"] != "not run":
                continue
            if _shared_with_cpu(device, row.get("cpu")):
                continue
            if record.get("not_run") == PENDING:
                reads = ", ".join((datasets or {}).get(claim_id, []))
                pending[f"{record['system']}: `{record['protocol'].rsplit(':', 1)[-1]}`"
                        + (f" reading {reads}" if reads else "")].add(claim_id)
            else:
                missing[record["reason"].split(" (")[0].rstrip(".")].add(claim_id)
        title = DEVICE_TITLES.get(device, device)
        if not pending and not missing:
            lines += [f"- {title}: none", ""]
            continue
        lines.append(f"- {title}:")
        lines += [f"  - {name}: full protocol not run yet ({_claims(ids)})" for name, ids in sorted(pending.items())]
        lines += [f"  - input missing ({_claims(ids)}): {reason}" for reason, ids in sorted(missing.items())]
    lines.append("")
    return "\n".join(lines)


def _claims(ids: set[str]) -> str:
    return f"{len(ids)} claim{'s' if len(ids) != 1 else ''}"


def markdown(records: Iterable[dict[str, Any]], devices: tuple[str, ...] = ("cpu",)) -> str:
    """One table row per claim with each device's measurement and verdict side by side. For each
    claim and device the record shown is the one the report shows (a verdict over `not run`, current
    code over stale, the full profile over smoke, then the newest)."""
    chosen = _chosen(records, devices)
    by_system: dict[str, list[dict[str, dict[str, Any]]]] = defaultdict(list)
    for claim_records in chosen.values():
        by_system[next(iter(claim_records.values()))["system"]].append(claim_records)
    lines: list[str] = []
    for system in sorted(by_system):
        rows_of_system = by_system[system]
        heading = []
        for device in devices:
            counts = Counter("as CPU (device-independent)" if _shared_with_cpu(device, row.get("cpu"))
                             else _short_label(row[device]) for row in rows_of_system if device in row)
            heading.append(f"{DEVICE_TITLES.get(device, device)} " +
                           (", ".join(f"{n} {label}" for label, n in sorted(counts.items())) or "no verdicts yet"))
        lines += [f"#### {system}: " + "; ".join(heading), ""]
        tables: dict[str, list[dict[str, dict[str, Any]]]] = defaultdict(list)
        loose = []
        for row in rows_of_system:
            first = next(iter(row.values()))
            (tables[first["table"]["name"]] if first["table"] else loose).append(row)
        for name in sorted(tables, key=natural_key):
            rows = sorted(tables[name], key=lambda row: _table_key(next(iter(row.values()))))
            labels = {_verdict_text(record, device, row.get("cpu")) for row in rows for device, record in row.items()}
            if len(labels) == 1 and all(record["verdict"] == "not run" for row in rows for record in row.values()):
                lines += [f"*{name}*: {len(rows)} claims, all {labels.pop()}", ""]
                continue
            lines += [f"*{name}*", "", *_header("row · column", devices)]
            parameters = [row for row in rows if next(iter(row.values()))["table"]["column"] in PARAMETER_COLUMNS]
            for row in rows:
                if row not in parameters:
                    table = next(iter(row.values()))["table"]
                    lines.append(_row(f"{table['row']} · {table['column']}", row, devices))
            if parameters:
                lines.append(_parameter_line(parameters, devices))
            lines.append("")
        if loose:
            lines += ["*Other claims*", "", *_header("claim", devices)]
            lines += [_row(next(iter(row.values()))["claim_id"], row, devices)
                      for row in sorted(loose, key=lambda row: next(iter(row.values()))["claim_id"])]
            lines.append("")
    return "\n".join(lines)


def _short_label(record: dict[str, Any]) -> str:
    return verdict_label(record).split(" (")[0] if record["verdict"] == "not reproduced" else verdict_label(record)


def _table_key(record: dict[str, Any]) -> tuple:
    return natural_key(record["table"]["row"]), natural_key(record["table"]["column"])


README_BEGIN = "<!-- verdicts:begin (generated by python -m verify summary --readme README.md; do not edit) -->"
README_END = "<!-- verdicts:end -->"


def readme_section(records: Iterable[dict[str, Any]], datasets: dict[str, list[str]] | None = None) -> str:
    records = list(records)
    return (f"{README_BEGIN}\n{markdown(records, ('cpu', 'cuda'))}\n{waiting(records, ('cpu', 'cuda'), datasets)}\n"
            f"{README_END}")


def with_section(text: str, section: str, path: str = "README.md") -> str:
    """`text` with the generated block between the markers replaced by `section`."""
    begin, end = text.find(README_BEGIN), text.find(README_END)
    if begin < 0 or end < begin:
        raise ValueError(f"{path}: no generated verdicts block ({README_BEGIN} ... {README_END})")
    return text[:begin] + section + text[end + len(README_END):]
