"""The HTML report: claimed against measured, per device, with the verdict and its evidence.

One static, self-contained file (no network, no external assets, no JavaScript): an index of the
systems and of every claim, the source's tables rebuilt beside the measured ones, and a section per
claim with its quote, protocol, per-seed values (inline SVG), accuracy matrices, findings and the
environment behind each number. Every string from ledgers and results is escaped by the template
engine, so a quote containing markup shows as text; figures are built by `verify.plots`, which
escapes the text it places in SVG.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from jinja2 import Environment, PackageLoader, select_autoescape

from verify import plots
from verify.store import Run, is_timing_output, merge_verdicts, write_text_atomic
from verify.verdicts import MISSING, PENDING, Verdict

_ENVIRONMENT = Environment(
    loader=PackageLoader("verify", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)

# The two devices the harness runs on, in this order. A device with no record at all gets no column
# (the lede names it instead); one with records gets a column, where a missing run shows as missing.
MAIN_DEVICES = ("cpu", "cuda")
# `not run` is shown as why: the full protocol has not run here yet, or an input (file, GPU) is missing.
VERDICT_ORDER = ("reproduced", "not reproduced", "inconclusive", "measured", PENDING, MISSING)
VERDICT_MEANINGS = {
    "reproduced": "the claim holds by its kind's rule: every seed satisfies it (universal, exact), one run's "
                  "95% prediction interval meets the band (single run), or the 95% interval of the mean lies "
                  "inside it (mean)",
    "not reproduced": "it does not: a counterexample seed, or the interval wholly outside the band; the badge "
                      "says whether the measurement lies above or below",
    "inconclusive": "the interval straddles an edge of the band, or fewer than 5 seeds ran: more seeds would decide",
    "measured": "a finding with no claimed value, reported as a measurement",
    PENDING: "not run: only the reduced (smoke) size ran here, which never speaks for a quote; run --profile full",
    MISSING: "not run: an input is absent here (dataset file, model weights, a CUDA device); the reason names it",
}
CLAIM_KIND_RULES = {
    "universal": "every seed must satisfy the claim; one counterexample seed refutes it (5 seeds to reproduce)",
    "single_run": "the claimed number must fall in the 95% prediction interval of one new run",
    "mean": "the 95% interval of the mean must lie inside the band (5 seeds for a definite verdict)",
    "exact": "every seed must satisfy the claim (a deterministic value)",
}
_GITHUB_REPOSITORY = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


def verdict_category(record: dict[str, Any]) -> str:
    """The verdict, with `not run` split into "full protocol pending" and "input missing"."""
    if record["verdict"] != "not run":
        return record["verdict"]
    pending = record.get("not_run") == PENDING or (record.get("not_run") is None and
                                                   record["reason"].startswith("tier 'full'"))
    return PENDING if pending else MISSING


def verdict_label(record: dict[str, Any]) -> str:
    if record["verdict"] == "not run":
        return verdict_category(record)
    return Verdict(record["verdict"], record["direction"], record["reason"]).label


def css_class(text: str) -> str:
    """A verdict or name as a CSS class / anchor fragment: lower-case letters, digits and dashes."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def _format_number(value: float | None) -> str:
    return "–" if value is None else f"{value:.6g}"


def _seed_value(value: float | None) -> str:
    """A per-seed value for the report: whole numbers in full (parameter counts), others to 6
    significant digits (the exports keep every digit)."""
    if value is None:
        return "–"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return format(value, ".6g")


def _format_interval(interval: list[float] | None) -> str:
    return "–" if interval is None else f"[{interval[0]:.4g}, {interval[1]:.4g}]"


def claimed_text(record: dict[str, Any]) -> str:
    claimed = record["claimed"]
    if claimed is None:
        return "–"
    prefix = {"at_least": "≥ ", "at_most": "≤ ", "exact": "exactly "}.get(record["comparison"] or "", "")
    body = f"{claimed[0]:.6g} – {claimed[1]:.6g}" if isinstance(claimed, list) else f"{claimed:.6g}"
    if record["tolerance"] and record["comparison"] == "equal":
        body += f" ± {record['tolerance']:.2g}"
    elif record["tolerance"] and record["comparison"] in ("at_least", "at_most"):
        body += f" (tolerance {record['tolerance']:.2g})"
    return prefix + body


def _difference(record: dict[str, Any]) -> float | None:
    """Measured mean minus the claimed value (for a claimed range: distance past its nearer edge)."""
    claimed, mean = record["claimed"], record["mean"]
    if claimed is None or mean is None:
        return None
    if isinstance(claimed, list):
        difference = mean - claimed[0] if mean < claimed[0] else max(0.0, mean - claimed[1])
    else:
        difference = mean - claimed
    # A mean of 28.200000000000003 against 28.2 is a rounding artefact, not a difference to colour.
    return 0.0 if abs(difference) <= 1e-9 * max(1.0, abs(mean)) else difference


def _preference(record: dict[str, Any]) -> tuple[bool, bool, bool, str]:
    # On one device: a verdict outranks `not run`, current code outranks stale (a bundled verdict whose
    # protocol has changed since), a full-profile verdict a smoke one; then the newest wins.
    return record["verdict"] != "not run", not record.get("stale", False), record["profile"] == "full", record["created"]


def _as_run_dict(run: Run | dict[str, Any]) -> dict[str, Any]:
    return run.as_dict() if isinstance(run, Run) else run


@dataclass
class Cell:
    """One device's verdict on one entry, with the runs behind it."""

    record: dict[str, Any]
    runs: list[dict[str, Any]]

    @property
    def device(self) -> str:
        return self.record["device"]

    @property
    def label(self) -> str:
        return verdict_label(self.record)

    @property
    def badge(self) -> str:
        return css_class(verdict_category(self.record))

    @property
    def stale(self) -> bool:
        return bool(self.record.get("stale"))

    @property
    def provenance(self) -> str:
        """Who measured this verdict: profile, machine, torch and code version."""
        record = self.record
        text = (f"{record['profile']} profile on {record['device_name']}, torch {record['torch_version']}, "
                f"code {record['code_version']}")
        return text + (": STALE, the protocol's code has changed since" if self.stale else "")

    @property
    def mean(self) -> str:
        return _format_number(self.record["mean"])

    @property
    def interval(self) -> str:
        return _format_interval(self.record["interval"])

    @property
    def prediction(self) -> str:
        return _format_interval(self.record.get("prediction_interval"))

    @property
    def difference(self) -> str:
        difference = _difference(self.record)
        if difference is None:
            return ""
        return "0" if difference == 0 else f"{difference:+.3g}"

    @property
    def seed_values(self) -> dict[int, float]:
        return dict(zip(self.record["seeds"], self.record["values"]))

    @property
    def runs_by_seed(self) -> dict[int, dict[str, Any]]:
        return {run["seed"]: run for run in self.runs}

    @property
    def wall_seconds(self) -> float:
        return sum(run["wall_seconds"] for run in self.runs)


@dataclass
class EntryView:
    """A claim or finding as the report shows it: ledger fields, one cell per device, evidence."""

    record: dict[str, Any]  # the newest record: ledger fields (quote, protocol, ...) come from it
    cells: dict[str, Cell]
    superseded: list[dict[str, Any]]  # other records of this entry (older torch, other profile)
    findings: list["EntryView"] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.record["claim_id"]

    @property
    def claimed(self) -> str:
        return claimed_text(self.record)

    @property
    def differ(self) -> bool:
        """Whether the devices that measured this entry reach different verdicts.

        `not run` on one device is a gap in coverage, not a disagreement, so it does not count.
        """
        labels = {cell.label for cell in self.cells.values() if cell.record["verdict"] != "not run"}
        return len(labels) > 1

    @property
    def timing(self) -> bool:
        """Whether the metric reads a clock (an output named `*_seconds` or `*_step_time`): its
        numbers are a property of the machine, so devices are expected to differ."""
        names = [value for value in self.record["metric_args"].values() if isinstance(value, str)]
        return any(is_timing_output(name) for name in names)

    @property
    def numbers_differ(self) -> bool:
        """Whether two devices measured numbers that disagree beyond chance and the claim's tolerance:
        their means differ by more than the tolerance and their 95% intervals do not overlap.

        Different hardware rounds differently, so equal numbers are not expected; this flags the
        differences a reader should look at, whatever the verdicts say. Timing entries are
        excluded (`timing`): a GPU's step time differs from a CPU's by design.
        """
        if self.timing:
            return False
        measured = [cell.record for cell in self.cells.values()
                    if cell.record["verdict"] != "not run" and cell.record["mean"] is not None]
        for index, first in enumerate(measured):
            for second in measured[index + 1:]:
                gap = abs(first["mean"] - second["mean"])
                if gap <= max(first["tolerance"] or 0.0, 1e-9 * max(1.0, abs(first["mean"]))):
                    continue
                low_a, high_a = first["interval"] or (first["mean"], first["mean"])
                low_b, high_b = second["interval"] or (second["mean"], second["mean"])
                if high_a < low_b or high_b < low_a:
                    return True
        return False

    @property
    def verdict_classes(self) -> str:
        classes = {f"v-{cell.badge}" for cell in self.cells.values()}
        if self.differ:
            classes.add("v-differ")
        return " ".join(sorted(classes))

    @property
    def source_url(self) -> str | None:
        source = self.record["source"]
        if not source or not _GITHUB_REPOSITORY.match(source["repository"]):
            return None
        return f"https://github.com/{source['repository']}/blob/HEAD/{source['file']}"

    @property
    def metric_text(self) -> str:
        arguments = self.record["metric_args"]
        if not arguments:
            return self.record["metric"]
        return f"{self.record['metric']}({', '.join(f'{k}={json.dumps(v)}' for k, v in sorted(arguments.items()))})"

    @property
    def params_text(self) -> str:
        return json.dumps(self.record["params"], sort_keys=True)

    @property
    def dot_plot(self):
        series = [
            plots.SeedSeries(device, cell.record["seeds"], cell.record["values"], cell.record["mean"],
                             None if cell.record["interval"] is None else tuple(cell.record["interval"]))
            for device, cell in self.cells.items()
        ]
        record = self.record
        return plots.dot_plot(series, record["claimed"], record["comparison"], record["tolerance"] or 0.0)

    @property
    def seed_rows(self) -> list[dict[str, Any]]:
        """One row per seed: each device's value (6 significant digits; exact in the exports), the run's time and key."""
        seeds = sorted({seed for cell in self.cells.values() for seed in cell.record["seeds"]})
        rows = []
        for seed in seeds:
            values = {}
            for device, cell in self.cells.items():
                value = cell.seed_values.get(seed)
                run = cell.runs_by_seed.get(seed)
                values[device] = {
                    "value": _seed_value(value),
                    "seconds": None if run is None else f"{run['wall_seconds']:.2f}",
                    "run_key": None if run is None else run["run_key"][:16],
                }
            rows.append({"seed": seed, "values": values})
        return rows


@dataclass
class Matrix:
    """An accuracy-matrix output of one device's runs, drawn as the mean over seeds (each seed's own
    matrix is in the exports)."""

    name: str
    device: str
    mean_figure: Any
    seeds: int


def _mean_matrix(matrices: list[list[list[float | None]]]) -> list[list[float | None]] | None:
    shape = [len(row) for row in matrices[0]]
    if any([len(row) for row in matrix] != shape for matrix in matrices):
        return None
    mean = []
    for row_index, width in enumerate(shape):
        row = []
        for column in range(width):
            cells = [m[row_index][column] for m in matrices if m[row_index][column] is not None]
            row.append(sum(cells) / len(cells) if cells else None)
        mean.append(row)
    return mean


def matrices_for(cells: Iterable[Cell], shown_runs: dict[str, str], entry_id: str) -> tuple[list[Matrix], list[str]]:
    """Mean heatmaps of every output ending in `accuracy_matrix`, each run's shown once in the report.

    Returns the new heatmaps and the ids of earlier entries that already show the matrices of some
    of these runs (claims on the same runs share them); `shown_runs` maps run key -> that entry id.
    A cell with no verdict (smoke runs of a full-tier entry) shows none: its runs only show that the
    protocol runs. Each seed's matrix is in the exports (`verify export`), not drawn: drawing every
    seed made the report several megabytes of near-identical pictures.
    """
    found: list[Matrix] = []
    shown_under: set[str] = set()
    for cell in cells:
        if cell.record["verdict"] == "not run":
            continue
        by_name: dict[str, list[tuple[int, list]]] = defaultdict(list)
        for run in cell.runs:
            names = [name for name, value in sorted(run["outputs"].items())
                     if name.endswith("accuracy_matrix") and isinstance(value, list) and value]
            if not names:
                continue
            if run["run_key"] in shown_runs:
                shown_under.add(shown_runs[run["run_key"]])
                continue
            shown_runs[run["run_key"]] = entry_id
            for name in names:
                by_name[name].append((run["seed"], run["outputs"][name]))
        for name, seeded in by_name.items():
            mean = _mean_matrix([matrix for _, matrix in seeded])
            figure = plots.heatmap(mean if mean is not None else seeded[0][1])
            found.append(Matrix(name, cell.device, figure, len(seeded) if mean is not None else 1))
    return found, sorted(shown_under - {entry_id})


def dataset_rows(cells: Iterable[Cell]) -> list[dict[str, Any]]:
    """Every dataset file the runs read, with its SHA-256 and the devices whose runs read it."""
    devices_by_file: dict[tuple[str, str], set[str]] = defaultdict(set)
    for cell in cells:
        for run in cell.runs:
            for name, digest in (run["outputs"].get("dataset_files") or {}).items():
                devices_by_file[(name, str(digest))].add(cell.device)
    return [
        {"file": name, "sha256": digest, "devices": ", ".join(sorted(devices))}
        for (name, digest), devices in sorted(devices_by_file.items())
    ]


@dataclass
class ClaimSection:
    """A claim with its findings and the evidence drawn from their runs."""

    entry: EntryView
    matrices: dict[str, list[Matrix]]  # entry id -> heatmaps first shown under that entry
    matrices_elsewhere: dict[str, list[str]]  # entry id -> earlier entries showing its runs' heatmaps
    datasets: list[dict[str, Any]]


def _build_section(entry: EntryView, shown_runs: dict[str, str]) -> ClaimSection:
    matrices, elsewhere = {}, {}
    for shown_entry in (entry, *entry.findings):
        matrices[shown_entry.id], elsewhere[shown_entry.id] = matrices_for(shown_entry.cells.values(), shown_runs,
                                                                           shown_entry.id)
    cells = [cell for shown_entry in (entry, *entry.findings) for cell in shown_entry.cells.values()]
    return ClaimSection(entry, matrices, elsewhere, dataset_rows(cells))


def _entry_views(records: list[dict[str, Any]], runs: dict[str, dict[str, Any]]) -> dict[str, EntryView]:
    by_claim: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        by_claim[record["claim_id"]].append(record)
    views = {}
    for claim_id, claim_records in by_claim.items():
        chosen: dict[str, dict[str, Any]] = {}
        for record in claim_records:
            if record["device"] not in chosen or _preference(record) > _preference(chosen[record["device"]]):
                chosen[record["device"]] = record
        ordered = sorted(chosen, key=device_sort_key)
        if len(ordered) > 1 and all(chosen[device].get("device_independent") for device in ordered) \
                and len({tuple(chosen[device]["run_keys"]) for device in ordered}) == 1:
            ordered = ordered[:1]  # the same device-independent runs behind every device: shown once
        cells = {
            device: Cell(chosen[device], [runs[key] for key in chosen[device]["run_keys"] if key in runs])
            for device in ordered
        }
        newest = max(claim_records, key=lambda r: r["created"])
        superseded = [r for r in claim_records if r is not chosen[r["device"]]]
        views[claim_id] = EntryView(newest, cells, sorted(superseded, key=lambda r: (r["device"], r["created"])))
    return views


def device_sort_key(device: str) -> tuple[int, str]:
    return (MAIN_DEVICES.index(device) if device in MAIN_DEVICES else len(MAIN_DEVICES), device)


@dataclass
class SystemView:
    name: str
    anchor: str
    claims: list[EntryView]  # findings hang under their claim; orphan findings are listed as entries

    def counts(self, devices: list[str]) -> dict[str, dict[str, int]]:
        """Claims (not findings) per verdict and device."""
        counts = {verdict: {device: 0 for device in devices} for verdict in VERDICT_ORDER}
        for claim in self.claims:
            if claim.record["kind"] != "claim":
                continue
            for device, cell in claim.cells.items():
                counts[verdict_category(cell.record)][device] += 1
        return counts

    @property
    def claim_count(self) -> int:
        return sum(1 for claim in self.claims if claim.record["kind"] == "claim")

    @property
    def finding_count(self) -> int:
        return sum(len(claim.findings) + (claim.record["kind"] == "finding") for claim in self.claims)

    @property
    def differ_count(self) -> int:
        return sum(claim.differ + sum(f.differ for f in claim.findings) for claim in self.claims)

    @property
    def numbers_differ_count(self) -> int:
        return sum(claim.numbers_differ + sum(f.numbers_differ for f in claim.findings) for claim in self.claims)


def _systems(views: dict[str, EntryView]) -> list[SystemView]:
    for view in views.values():
        parent = views.get(view.record["of"]) if view.record["kind"] == "finding" else None
        if parent is not None:
            parent.findings.append(view)
    by_system: dict[str, list[EntryView]] = defaultdict(list)
    for view in views.values():
        if view.record["kind"] == "claim" or views.get(view.record["of"]) is None:
            by_system[view.record["system"]].append(view)
    systems = []
    used_anchors: set[str] = set()
    for name in sorted(by_system):
        anchor = css_class(name)
        while anchor in used_anchors:
            anchor += "-x"
        used_anchors.add(anchor)
        entries = sorted(by_system[name], key=lambda v: (v.record["kind"] != "claim", v.id))
        for entry in entries:
            entry.findings.sort(key=lambda f: f.id)
        systems.append(SystemView(name, anchor, entries))
    return systems


@dataclass
class TableView:
    """A table of a source document rebuilt: claimed cell beside each device's measured cell."""

    name: str
    anchor: str
    rows: list[str]
    columns: list[str]
    cells: dict[tuple[str, str], EntryView]


def natural_key(text: str) -> list[tuple[int, int | str]]:
    """Sort key comparing digit runs as numbers: "T=5" < "T=10"."""
    return [(0, int(part)) if part.isdigit() else (1, part.lower()) for part in re.split(r"(\d+)", text) if part]


def _tables(views: Iterable[EntryView]) -> list[TableView]:
    grouped: dict[str, list[EntryView]] = defaultdict(list)
    for view in views:
        if view.record["table"]:
            grouped[view.record["table"]["name"]].append(view)
    tables = []
    for index, (name, entries) in enumerate(sorted(grouped.items())):
        # Records do not carry ledger order; a natural sort keeps "5 tasks" before "10 tasks".
        rows = sorted({view.record["table"]["row"] for view in entries}, key=natural_key)
        columns = sorted({view.record["table"]["column"] for view in entries}, key=natural_key)
        cells = {(view.record["table"]["row"], view.record["table"]["column"]): view for view in entries}
        tables.append(TableView(name, f"table-{index + 1}", rows, columns, cells))
    return tables


def _machines(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each distinct machine setup that produced records: device, its name, torch, environment."""
    machines: dict[tuple, dict[str, Any]] = {}
    for record in records:
        environment = record.get("environment") or {}
        key = (record["device"], record["device_name"], record["torch_version"], environment.get("python"),
               environment.get("platform"), environment.get("git_commit"))
        machine = machines.setdefault(key, {
            "device": record["device"], "device_name": record["device_name"], "torch_version": record["torch_version"],
            "python": environment.get("python"), "platform": environment.get("platform"),
            "git_commit": environment.get("git_commit"), "records": 0, "latest": record["created"],
        })
        machine["records"] += 1
        machine["latest"] = max(machine["latest"], record["created"])
    return sorted(machines.values(), key=lambda m: (device_sort_key(m["device"]), m["latest"]))


def _mixed_versions(records: list[dict[str, Any]]) -> dict[str, list[str]]:
    """The torch versions and commits behind the measured records, when there is more than one:
    merged results from different software deserve a warning at the top, not only the table at the
    bottom."""
    measured = [record for record in records if record["verdict"] != "not run"]
    torch_versions = sorted({record["torch_version"] for record in measured if record["torch_version"]})
    commits = sorted({(record.get("environment") or {}).get("git_commit") or "" for record in measured} - {""})
    mixed = {}
    if len(torch_versions) > 1:
        mixed["torch versions"] = torch_versions
    if len(commits) > 1:
        mixed["commits"] = [commit[:12] for commit in commits]
    return mixed


def build_context(records: Iterable[dict[str, Any]], runs: Iterable[Run | dict[str, Any]]) -> dict[str, Any]:
    """Everything the template shows, computed once."""
    records = merge_verdicts([records])
    runs_by_key = {run["run_key"]: run for run in map(_as_run_dict, runs)}
    views = _entry_views(records, runs_by_key)
    systems = _systems(views)
    devices = sorted({record["device"] for record in records} or {MAIN_DEVICES[0]}, key=device_sort_key)
    shown_runs: dict[str, str] = {}
    sections = {system.name: [_build_section(entry, shown_runs) for entry in system.claims] for system in systems}
    totals = {verdict: {device: 0 for device in devices} for verdict in VERDICT_ORDER}
    for system in systems:
        for verdict, per_device in system.counts(devices).items():
            for device, count in per_device.items():
                totals[verdict][device] += count
    return {
        "systems": systems,
        "sections": sections,
        "tables": _tables(views.values()),
        "devices": devices,
        "verdicts": VERDICT_ORDER,
        "verdict_meanings": VERDICT_MEANINGS,
        "claim_kind_rules": CLAIM_KIND_RULES,
        "verdict_class": css_class,
        "plot_css": plots.plot_css(),
        "totals": totals,
        "machines": _machines(records),
        "absent_devices": [device for device in MAIN_DEVICES if device not in devices],
        "mixed": _mixed_versions(records),
        "claim_count": sum(system.claim_count for system in systems),
        "finding_count": sum(system.finding_count for system in systems),
        "differ_count": sum(system.differ_count for system in systems),
        "numbers_differ_count": sum(system.numbers_differ_count for system in systems),
        "run_count": len(runs_by_key),
        "record_count": len(records),
        "as_of": max((record["created"] for record in records), default="no results"),
    }


def render_report(records: Iterable[dict[str, Any]], runs: Iterable[Run | dict[str, Any]]) -> str:
    return _ENVIRONMENT.get_template("report.html").render(**build_context(records, runs))


def write_report(records: Iterable[dict[str, Any]], runs: Iterable[Run | dict[str, Any]], path: Path | str) -> Path:
    """Render the report for these verdict records and the runs behind them to `path` and return it.

    `runs` are `ResultsStore.runs()` or an export's "runs"; verdicts whose runs are absent still
    show, without per-run evidence (matrices, dataset checksums, run times).
    """
    # Written beside and renamed over the previous report: a kill mid-write leaves that one intact.
    return write_text_atomic(path, render_report(records, runs))
