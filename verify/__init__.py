"""The claims harness: ledger, metrics, statistics and verdicts, digests, results store, runner,
pytest plugin, report and command line. Generic: it never imports a system under test."""
