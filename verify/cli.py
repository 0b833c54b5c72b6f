"""Command line: ``python -m verify {report,export,import,check-ledgers}``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from verify import report
from verify.ledger import LedgerError, default_seeds_dir, load_all
from verify.store import ResultsStore, merge_verdicts, read_export

DEFAULT_RESULTS = "reports/results.sqlite"


def _report(args: argparse.Namespace) -> int:
    record_sets, runs = [], []
    if Path(args.results).exists():
        store = ResultsStore(args.results)
        record_sets.append(store.verdicts())
        runs.extend(store.runs())
    elif not args.merge:
        print(f"error: no results store at {args.results} and no --merge files given", file=sys.stderr)
        return 2
    for path in args.merge:
        document = read_export(path)
        record_sets.append(document["verdicts"])
        runs.extend(document["runs"])
    path = report.write_report(merge_verdicts(record_sets), runs, args.out)
    print(f"wrote {path}")
    return 0


def _export(args: argparse.Namespace) -> int:
    document = ResultsStore(args.results).export_json(args.out)
    print(f"wrote {args.out}: {len(document['runs'])} runs, {len(document['verdicts'])} verdicts")
    return 0


def _import(args: argparse.Namespace) -> int:
    store = ResultsStore(args.results)
    for path in args.files:
        runs, verdicts = store.import_json(path)
        print(f"imported {path}: {runs} runs, {verdicts} verdicts")
    return 0


def _check_ledgers(args: argparse.Namespace) -> int:
    seeds_dir = Path(args.seeds_dir) if args.seeds_dir else default_seeds_dir()
    try:
        entries = load_all(Path(args.claims_dir), seeds_dir)
    except LedgerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    checked = "quotes checked against " + str(seeds_dir) if seeds_dir else "quotes not checked (no seeds folder)"
    print(f"{len(entries)} entries valid; {checked}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m verify", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    make = commands.add_parser("report", help="write the HTML report from the store and/or exported JSON files")
    make.add_argument("--results", default=DEFAULT_RESULTS, help=f"results store (default {DEFAULT_RESULTS})")
    make.add_argument("--merge", nargs="*", default=[], metavar="JSON", help="exported results files to merge in")
    make.add_argument("--out", default="reports/index.html", help="output HTML file (default reports/index.html)")
    make.set_defaults(handler=_report)

    export = commands.add_parser("export", help="export the store's runs and verdicts as JSON")
    export.add_argument("--results", default=DEFAULT_RESULTS)
    export.add_argument("--out", required=True, help="JSON file to write")
    export.set_defaults(handler=_export)

    importer = commands.add_parser("import", help="merge exported JSON files into the store")
    importer.add_argument("--results", default=DEFAULT_RESULTS)
    importer.add_argument("files", nargs="+")
    importer.set_defaults(handler=_import)

    check = commands.add_parser("check-ledgers", help="validate every ledger (and quotes, when the seeds are here)")
    check.add_argument("--claims-dir", default="claims")
    check.add_argument("--seeds-dir", default=None, help="archived source documents (default ../shared/seeds)")
    check.set_defaults(handler=_check_ledgers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
