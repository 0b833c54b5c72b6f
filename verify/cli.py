"""Command line: ``python -m verify {plan,report,summary,export,import,check-ledgers,fetch-data}``."""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path

from verify import report
from verify.ledger import LedgerError, default_seeds_dir, load_all, load_ledger
from verify.store import ResultsStore, merge_verdicts, read_export

DEFAULT_RESULTS = "reports/results.sqlite"


def _report(args: argparse.Namespace) -> int:
    if not Path(args.results).exists() and not args.merge:
        print(f"error: no results store at {args.results} and no --merge files given", file=sys.stderr)
        return 2
    # Every export is checked whole before the report is built: a bad one is one line naming it.
    documents = [read_export(path) for path in args.merge]
    record_sets, runs = [], []
    if Path(args.results).exists():
        store = ResultsStore(args.results)
        record_sets.append(store.verdicts())
        runs.extend(store.runs())
    for document in documents:
        record_sets.append(document["verdicts"])
        runs.extend(document["runs"])
    path = report.write_report(merge_verdicts(record_sets), runs, args.out)
    print(f"wrote {path}")
    return 0


def _summary(args: argparse.Namespace) -> int:
    from verify import summary

    record_sets = [read_export(path)["verdicts"] for path in args.merge]
    if Path(args.results).exists():
        record_sets.insert(0, ResultsStore(args.results).verdicts())
    if not record_sets:
        print(f"error: no results store at {args.results} and no --merge files given", file=sys.stderr)
        return 2
    print(summary.markdown(merge_verdicts(record_sets), args.device))
    return 0


def _plan(args: argparse.Namespace) -> int:
    from verify.runner import Runner, engine_settings, resolve_device

    ledgers: list[Path] = []
    for name in args.paths:
        path = Path(name)
        if path.is_dir():
            ledgers.extend(sorted(path.rglob("claims.toml")))
        elif path.is_file():
            ledgers.append(path)
        else:
            print(f"error: {path}: no such ledger or folder", file=sys.stderr)
            return 2
    try:
        entries = [entry for ledger in ledgers for entry in load_ledger(ledger, default_seeds_dir())]
    except LedgerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    device = resolve_device(args.device)
    workers, threads, seed_batching = engine_settings(device, args.workers, args.threads, args.seed_batching)
    runner = Runner(ResultsStore(args.results), Path("."), device=device, profile=args.profile,
                    use_cache=not args.no_cache, seed_limit=args.seeds, progress=lambda message: None,
                    threads=threads, seed_batching=seed_batching)
    plan = runner.plan(entries, longest_first=workers > 1)
    print(f"claims plan ({device}, profile {args.profile}, {runner.threads} thread(s) per run, {len(entries)} entries)")
    for line in plan.lines(workers):
        print(line)
    return 0


def _export(args: argparse.Namespace) -> int:
    if not Path(args.results).is_file():  # opening would create an empty store
        print(f"error: no results store at {args.results}", file=sys.stderr)
        return 2
    if args.format == "csv":
        from verify import results
        from verify.store import write_text_atomic

        table = (results.entries if args.table == "entries" else results.seeds)(args.results)
        write_text_atomic(args.out, table.to_csv(index=False))
        print(f"wrote {args.out}: {len(table)} rows ({args.table})")
        return 0
    document = ResultsStore(args.results).export_json(args.out)
    print(f"wrote {args.out}: {len(document['runs'])} runs, {len(document['verdicts'])} verdicts")
    return 0


def _import(args: argparse.Namespace) -> int:
    # All files are checked before the store is opened, then imported in one transaction: a bad
    # file anywhere leaves the store (even its absence) as it was.
    documents = [read_export(path) for path in args.files]
    runs, verdicts = ResultsStore(args.results).import_documents(documents)
    for path, document in zip(args.files, documents):
        print(f"imported {path}: {len(document['runs'])} runs, {len(document['verdicts'])} verdicts")
    if len(documents) > 1:
        print(f"imported {runs} runs, {verdicts} verdicts in all")
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


def _fetch_data(args: argparse.Namespace) -> int:
    from implementations.common.datasets import resolve_data_dir
    from verify import fetch

    data_dir = resolve_data_dir(args.data_dir)
    if args.list:
        print("\n".join(fetch.listing(data_dir)))
        return 0
    outcomes = fetch.fetch(args.names, data_dir, trust_unverified=args.trust_unverified,
                           torchvision_roots=args.torchvision_root)
    for outcome in outcomes:
        if outcome.ok:
            print(outcome.line())
        else:
            print(f"error: {outcome.line()}", file=sys.stderr)
    failed = sum(not outcome.ok for outcome in outcomes)
    print(f"{len(outcomes) - failed} of {len(outcomes)} files ready in {data_dir}")
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m verify", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    plan = commands.add_parser("plan", help="print the runs the ledgers still need, with estimated times")
    plan.add_argument("paths", nargs="*", default=["claims"], help="ledgers or folders (default claims)")
    plan.add_argument("--results", default=DEFAULT_RESULTS, help=f"results store (default {DEFAULT_RESULTS})")
    plan.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu")
    plan.add_argument("--profile", choices=("smoke", "full"), default="smoke")
    plan.add_argument("--seeds", type=int, default=None, metavar="N", help="only the first N seeds of each entry")
    plan.add_argument("--workers", default="1", help="workers the estimate divides the time among (or auto)")
    plan.add_argument("--threads", type=int, default=None, help="CPU threads per run (part of a run's identity)")
    plan.add_argument("--seed-batching", choices=("auto", "on", "off"), default="auto")
    plan.add_argument("--no-cache", action="store_true", help="plan every run, stored or not (each once)")
    plan.set_defaults(handler=_plan)

    make = commands.add_parser("report", help="write the HTML report from the store and/or exported JSON files")
    make.add_argument("--results", default=DEFAULT_RESULTS, help=f"results store (default {DEFAULT_RESULTS})")
    make.add_argument("--merge", nargs="*", default=[], metavar="JSON", help="exported results files to merge in")
    make.add_argument("--out", default="reports/index.html", help="output HTML file (default reports/index.html)")
    make.set_defaults(handler=_report)

    summary = commands.add_parser("summary", help="print the verdicts as Markdown, led by the sources' tables")
    summary.add_argument("--results", default=DEFAULT_RESULTS, help=f"results store (default {DEFAULT_RESULTS})")
    summary.add_argument("--merge", nargs="*", default=[], metavar="JSON", help="exported results files to merge in")
    summary.add_argument("--device", default="cpu", help="whose verdicts (default cpu)")
    summary.set_defaults(handler=_summary)

    export = commands.add_parser("export", help="export the store's runs and verdicts as JSON")
    export.add_argument("--results", default=DEFAULT_RESULTS)
    export.add_argument("--out", required=True, help="file to write")
    export.add_argument("--format", choices=("json", "csv"), default="json",
                        help="json: runs and verdicts (for import/report --merge); csv: one table (default json)")
    export.add_argument("--table", choices=("entries", "seeds"), default="entries",
                        help="with --format csv: one row per entry and device, or per seed (default entries)")
    export.set_defaults(handler=_export)

    importer = commands.add_parser("import", help="merge exported JSON files into the store")
    importer.add_argument("--results", default=DEFAULT_RESULTS)
    importer.add_argument("files", nargs="+")
    importer.set_defaults(handler=_import)

    check = commands.add_parser("check-ledgers", help="validate every ledger (and quotes, when the seeds are here)")
    check.add_argument("--claims-dir", default="claims")
    check.add_argument("--seeds-dir", default=None, help="archived source documents (default ../shared/seeds)")
    check.set_defaults(handler=_check_ledgers)

    fetcher = commands.add_parser("fetch-data", help="download the datasets into the data directory, verified")
    fetcher.add_argument("names", nargs="*", metavar="NAME",
                         help="datasets to fetch (default: every one whose checksums are known; --list names them)")
    fetcher.add_argument("--data-dir", default=None,
                         help="dataset folder (default: $CLAIMS_DATA_DIR, else ~/.cache/claims-harness/datasets)")
    fetcher.add_argument("--list", action="store_true", help="list the datasets, files, sizes, checksums and URLs")
    fetcher.add_argument("--torchvision-root", action="append", default=[], metavar="DIR",
                         help="a torchvision dataset root to copy verified files from (the data directory is "
                              "always searched too); repeatable")
    fetcher.add_argument("--trust-unverified", action="store_true",
                         help="download and keep files that have no known checksum (never by default)")
    fetcher.set_defaults(handler=_fetch_data)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except sqlite3.Error as error:  # not a database, locked, read-only
        print(f"error: results store {getattr(args, 'results', '')}: {error}", file=sys.stderr)
        return 2
    except (OSError, ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
