"""Command line: ``python -m verify {plan,report,summary,bundle,export,import,check-ledgers,fetch-data}``."""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from pathlib import Path

from verify import report
from verify.bundle import BASELINE_NAME, BUNDLE_DIR
from verify.ledger import NO_SOURCES, LedgerError, default_seeds_dir, load_all, load_ledger
from verify.store import ResultsStore, Run, merge_verdicts, read_export, write_text_atomic

DEFAULT_RESULTS = "reports/results.sqlite"


def _gather(args: argparse.Namespace) -> tuple[list[dict], list[dict]] | None:
    """(verdict records, runs) from the store, the --merge files and the bundle (unless --no-bundle);
    None when there is nothing to read. Every file is checked whole first: a bad one is one line."""
    from verify import bundle

    documents = [read_export(path) for path in args.merge]
    bundled_records, bundled_runs = ([], []) if args.no_bundle else bundle.load_bundle(Path(args.bundle))
    if not Path(args.results).exists() and not documents and not bundled_records:
        return None
    record_sets, runs = [bundled_records], list(bundled_runs)
    if Path(args.results).exists():
        store = ResultsStore(args.results)
        record_sets.append(bundle.mark_stale(store.verdicts()))
        runs.extend(run.as_dict() for run in store.runs())
    for document in documents:
        record_sets.append(document["verdicts"])
        runs.extend(document["runs"])
    return merge_verdicts(record_sets), runs


def _report(args: argparse.Namespace) -> int:
    gathered = _gather(args)
    if gathered is None:
        print(f"error: no results store at {args.results}, no bundle and no --merge files", file=sys.stderr)
        return 2
    path = report.write_report(*gathered, args.out)
    print(f"wrote {path}")
    return 0


def _summary(args: argparse.Namespace) -> int:
    from verify import bundle, summary

    if args.readme:  # the README's block: the reference bundle alone, CPU and CUDA side by side
        records, _ = bundle.load_bundle(Path(args.bundle))
        if not records:
            print(f"error: no bundle files in {args.bundle}", file=sys.stderr)
            return 2
        path = Path(args.readme)
        text = path.read_text(encoding="utf-8")
        datasets = {entry.id: list(entry.datasets) for entry in _ledger_entries("claims")}
        wanted = summary.with_section(text, summary.readme_section(records, datasets), str(path))
        if args.check:
            if wanted != text:
                print(f"error: {path}: the verdicts block is stale; regenerate it with "
                      f"python -m verify summary --readme {path}", file=sys.stderr)
                return 1
            print(f"{path}: the verdicts block matches the bundle")
            return 0
        write_text_atomic(path, wanted)
        print(f"wrote the verdicts block of {path} from {len(records)} bundled verdicts")
        return 0
    gathered = _gather(args)
    if gathered is None:
        print(f"error: no results store at {args.results}, no bundle and no --merge files", file=sys.stderr)
        return 2
    print(summary.markdown(gathered[0], tuple(args.device.split(","))))
    return 0


def _bundle_build(args: argparse.Namespace) -> int:
    from implementations.common.datasets import resolve_data_dir
    from verify import bundle

    entries = _ledger_entries(args.claims_dir)
    runs, records = [], []
    for name in args.stores:
        if not Path(name).is_file():
            print(f"error: no results store at {name}", file=sys.stderr)
            return 2
        store = ResultsStore(name)
        runs.extend(store.runs())
        records.extend(store.verdicts())
    for name in args.runs_from:
        document = read_export(name)
        runs.extend(Run(**run) for run in document["runs"])
        records.extend(document["verdicts"])
    document = bundle.build(entries, runs, args.device, not_run_records=records,
                            data_dir=resolve_data_dir(args.data_dir))
    write_text_atomic(args.out, json.dumps(document, indent=1, sort_keys=True, allow_nan=False) + "\n")
    counts: dict[str, int] = {}
    for record in document["verdicts"]:
        label = record["not_run"] or record["verdict"]
        counts[label] = counts.get(label, 0) + 1
    listed = ", ".join(f"{count} {label}" for label, count in sorted(counts.items()))
    print(f"wrote {args.out}: {len(document['runs'])} runs, {len(document['verdicts'])} verdicts ({listed})")
    for line in bundle.replacements(entries, runs):
        print(f"replaced by a re-run of the code here: {line}")
    if args.update_baseline:
        from verify import baseline

        path = Path(args.baseline)
        before = baseline.load(path)
        after = baseline.updated(before, document["verdicts"])
        baseline.write(path, after)
        changed = sum(before.get(claim, {}).get(slot) not in (None, verdict)
                      for claim, slots in after.items() for slot, verdict in slots.items())
        print(f"recorded the bundle's verdicts in {path} ({changed} changed)")
    return 0


def _bundle_audit(args: argparse.Namespace) -> int:
    from implementations.common.datasets import resolve_data_dir
    from verify import bundle
    from verify.runner import run_environment

    entries = _ledger_entries(args.claims_dir)
    files = [Path(name) for name in args.files] or bundle.bundle_files(Path(args.bundle))
    if not files:
        print(f"error: no bundle files in {args.bundle}", file=sys.stderr)
        return 2
    salt = args.salt if args.salt is not None else (run_environment()["git_commit"] or "")
    failed = False
    for path in files:
        result = bundle.audit(path, entries, rerun_seconds=args.rerun_seconds, salt=salt,
                              data_dir=resolve_data_dir(args.data_dir),
                              unnamed_processor_is_here=args.unnamed_processor_is_here, progress=print)
        for reason, runs in _grouped_by_reason(result.skipped).items():
            shown = ", ".join(runs[:3]) + (f" and {len(runs) - 3} more" if len(runs) > 3 else "")
            print(f"audit: {path.name}: not re-run here ({len(runs)} run{'s' * (len(runs) > 1)}: {shown}): {reason}")
        for line in result.problems:
            print(f"audit: FAILED: {line}", file=sys.stderr)
        failed = failed or bool(result.problems)
        print(f"audit: {path.name}: {result.checked_runs} run keys and {result.checked_verdicts} verdicts checked, "
              f"{len(result.rerun)} runs re-run byte-identical" + (", FAILED" if result.problems else ", passed"))
    return 1 if failed else 0


def _grouped_by_reason(lines: list[str]) -> dict[str, list[str]]:
    """"<protocol> seed <n>: <reason>" lines as {reason: ["<function> seed <n>", ...]}, in first-seen order
    (a bundle recorded elsewhere skips every run for one reason: one line, not hundreds)."""
    grouped: dict[str, list[str]] = {}
    for line in lines:
        run, _, reason = line.partition(": ")
        grouped.setdefault(reason, []).append(run.rsplit(":", 1)[-1])
    return grouped


def _ledger_entries(claims_dir: str):
    try:
        return load_all(Path(claims_dir), default_seeds_dir())
    except LedgerError as error:
        raise ValueError(str(error)) from None


def _plan(args: argparse.Namespace) -> int:
    from implementations.common.datasets import resolve_data_dir
    from verify import bundle
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
    name = None
    try:
        device = resolve_device(args.device)
    except RuntimeError:  # planning runs nothing: a GPU session can be planned (and timed) from here
        device, name = "cuda", "no CUDA device here"
        print("note: planning for CUDA on a machine without it: the estimates hold, but runs stored by "
              "another torch build count as pending", file=sys.stderr)
    workers, threads, seed_batching = engine_settings(device, args.workers, args.threads, args.seed_batching)
    runner = Runner(ResultsStore(args.results), resolve_data_dir(args.data_dir), device=device, profile=args.profile,
                    use_cache=not args.no_cache, seed_limit=args.seeds, progress=lambda message: None,
                    threads=threads, seed_batching=seed_batching, device_name=name,
                    reference_walls=[] if args.no_bundle else bundle.reference_wall_times(Path(args.bundle)),
                    reference_inputs_missing=[] if args.no_bundle else bundle.reference_inputs_missing(Path(args.bundle)))
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
    if args.require_sources and (seeds_dir is None or not seeds_dir.is_dir()):
        print(f"error: {NO_SOURCES}", file=sys.stderr)
        return 1
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


def _bundle_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", default=str(BUNDLE_DIR), help="reference bundle folder merged in (default results/)")
    parser.add_argument("--no-bundle", action="store_true", help="leave the reference bundle out")


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
    plan.add_argument("--bundle", default=str(BUNDLE_DIR), help="reference bundle folder whose wall times estimate "
                      "runs this store has never timed (default results/)")
    plan.add_argument("--no-bundle", action="store_true", help="estimate from this store alone")
    plan.add_argument("--data-dir", default=None, help="dataset folder whose missing files the plan names "
                      "(default: $CLAIMS_DATA_DIR, else ~/.cache/claims-harness/datasets)")
    plan.set_defaults(handler=_plan)

    make = commands.add_parser("report", help="write the HTML report from the store and/or exported JSON files")
    make.add_argument("--results", default=DEFAULT_RESULTS, help=f"results store (default {DEFAULT_RESULTS})")
    make.add_argument("--merge", nargs="*", default=[], metavar="JSON", help="exported results files to merge in")
    make.add_argument("--out", default="reports/index.html", help="output HTML file (default reports/index.html)")
    _bundle_options(make)
    make.set_defaults(handler=_report)

    summary = commands.add_parser("summary", help="print the verdicts as Markdown, led by the sources' tables")
    summary.add_argument("--results", default=DEFAULT_RESULTS, help=f"results store (default {DEFAULT_RESULTS})")
    summary.add_argument("--merge", nargs="*", default=[], metavar="JSON", help="exported results files to merge in")
    summary.add_argument("--device", default="cpu", help="whose verdicts, comma-separated side by side (default cpu)")
    summary.add_argument("--readme", default=None, metavar="FILE",
                         help="write the verdicts block of FILE (between its markers) from the bundle alone")
    summary.add_argument("--check", action="store_true",
                         help="with --readme: write nothing, fail when FILE's block differs from the bundle's")
    _bundle_options(summary)
    summary.set_defaults(handler=_summary)

    bundles = commands.add_parser("bundle", help="build or audit the reference bundle (results/)")
    bundle_commands = bundles.add_subparsers(dest="bundle_command", required=True)
    build = bundle_commands.add_parser("build", help="one device's bundle file: full-profile runs from stores or "
                                                     "exports, every full-profile verdict recomputed from them")
    build.add_argument("stores", nargs="*", help="results stores holding the runs")
    build.add_argument("--runs-from", nargs="*", default=[], metavar="JSON", help="exports whose runs to take too")
    build.add_argument("--device", choices=("cpu", "cuda"), required=True)
    build.add_argument("--out", required=True, help="bundle file to write (results/<device>-full.json)")
    build.add_argument("--claims-dir", default="claims")
    build.add_argument("--data-dir", default=None, help="dataset folder: a stored \"input missing\" is kept while "
                       "a file of the entry's datasets is absent there (default: $CLAIMS_DATA_DIR, else "
                       "~/.cache/claims-harness/datasets)")
    build.add_argument("--update-baseline", action="store_true", help="record the bundle's verdicts in the baseline")
    build.add_argument("--baseline", default=str(BUNDLE_DIR / BASELINE_NAME),
                       help="the baseline file (default results/baseline.json)")
    build.set_defaults(handler=_bundle_build)
    check = bundle_commands.add_parser("audit", help="check the bundle: run keys, verdicts recomputed from outputs, "
                                                     "a sample of CPU runs re-run byte-identical")
    check.add_argument("files", nargs="*", help="bundle files (default: every one in --bundle)")
    check.add_argument("--bundle", default=str(BUNDLE_DIR), help="bundle folder (default results/)")
    check.add_argument("--rerun-seconds", type=float, default=300.0,
                       help="re-run CPU runs whose recorded times add up to this (default 300; 0: none)")
    check.add_argument("--salt", default=None, help="what draws the sample (default: the git commit)")
    check.add_argument("--unnamed-processor-is-here", action="store_true",
                       help="re-run CPU runs whose processor was recorded by model name alone (\"AMD EPYC\", "
                            "before 2026-12-07) as if this machine were theirs; a difference then fails")
    check.add_argument("--data-dir", default=None, help="dataset folder (default: $CLAIMS_DATA_DIR)")
    check.add_argument("--claims-dir", default="claims")
    check.set_defaults(handler=_bundle_audit)

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
    check.add_argument("--require-sources", action="store_true",
                       help="fail when the archived source documents are absent (quotes cannot be checked)")
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
