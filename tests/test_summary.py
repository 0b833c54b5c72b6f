"""The Markdown verdict summary: led by the source tables, parameter counts on one line per table,
no number for a pending full protocol."""

import json
from pathlib import Path

from verify import cli, summary

FIXTURE = Path(__file__).parent / "fixtures" / "results-cpu.json"


def base():
    return json.loads(FIXTURE.read_text())["verdicts"][0]


def record(claim_id, row, column, verdict="reproduced", mean=1.0, **changes):
    values = [] if mean is None else [mean] * 5
    return {**base(), "claim_id": claim_id, "kind": "claim", "system": "toy", "device": "cpu", "verdict": verdict,
            "direction": None, "mean": mean, "values": values, "interval": None if mean is None else [mean, mean],
            "table": {"name": "Table 1", "row": row, "column": column}, "claimed": 1.0, "comparison": "equal",
            "tolerance": 0.0, "claim_kind": "exact", "prediction_interval": None, **changes}


def test_parameter_counts_are_one_line_and_pending_rows_carry_no_number():
    records = [record("a-params", "A", "Params"), record("b-params", "B", "Params", verdict="not reproduced",
                                                         direction="above", mean=2.0),
               record("a-acc", "A", "Accuracy", verdict="not run", mean=None, not_run="full protocol pending",
                      reason="full protocol pending: ...")]
    text = summary.markdown(records)
    assert text.count("parameter counts (2 rows)") == 1 and "B 2" in text
    pending = next(line for line in text.splitlines() if line.startswith("| A · Accuracy"))
    assert pending == "| A · Accuracy | 1 | – | full protocol pending |"


def test_a_universal_claim_shows_the_spread_of_its_seeds():
    spread = record("u", "A", "Retention", verdict="not reproduced", direction="above", mean=1.05,
                    claim_kind="universal", values=[1.0, 1.1, 1.05], interval=[0.9, 1.2])
    assert "seeds 1 to 1.1, n=3" in summary.markdown([spread])


def test_the_command_prints_the_summary(tmp_path, capsys):
    assert cli.main(["summary", "--results", str(tmp_path / "none.sqlite"), "--merge", str(FIXTURE), "--no-bundle"]) == 0
    assert "#### dtgma" in capsys.readouterr().out
    assert cli.main(["summary", "--results", str(tmp_path / "none.sqlite"), "--no-bundle"]) == 2


def test_a_full_profile_verdict_outranks_the_smoke_one():
    smoke = record("c", "A", "Accuracy", verdict="not run", mean=None, not_run="full protocol pending",
                   reason="full protocol pending", profile="smoke", created="2026-11-27T20:00:00")
    full = record("c", "A", "Accuracy", mean=0.98, profile="full", created="2026-11-27T19:00:00")
    text = summary.markdown([smoke, full])
    assert "| A · Accuracy | 1 | 0.98 (n=5) | reproduced |" in text and "pending" not in text


def test_a_table_with_nothing_measured_is_one_line():
    rows = [record(f"c{i}", f"R{i}", "Accuracy", verdict="not run", mean=None, not_run="input missing",
                   reason="CIFAR-100 file missing") for i in range(3)]
    assert "*Table 1*: 3 claims, all input missing" in summary.markdown(rows)


def test_the_readme_block_is_written_from_the_bundle_and_a_stale_one_fails_the_check(tmp_path, capsys):
    bundle = tmp_path / "results"
    bundle.mkdir()
    (bundle / "cpu-full.json").write_bytes(FIXTURE.read_bytes())
    readme = tmp_path / "README.md"
    readme.write_text(f"# Tool\n\nintro\n\n{summary.README_BEGIN}\nold\n{summary.README_END}\n\nafter\n")
    args = ["summary", "--readme", str(readme), "--bundle", str(bundle)]
    assert cli.main(args + ["--check"]) == 1
    assert "the verdicts block is stale" in capsys.readouterr().err
    assert cli.main(args) == 0
    text = readme.read_text()
    assert text.startswith("# Tool\n\nintro\n\n") and text.endswith("\n\nafter\n") and "#### dtgma" in text
    assert "CUDA verdict" in text and "(stale)" in text  # the fixture's code is not this code
    assert cli.main(args + ["--check"]) == 0
    readme.write_text(text.replace("reproduced", "reproduced!", 1))
    assert cli.main(args + ["--check"]) == 1
    readme.write_text("# Tool without a block\n")
    assert cli.main(args) == 2


def test_waiting_lists_claims_without_a_verdict_by_protocol_and_device():
    """Of both tiers: a ci-tier claim the bundle has not run on a device waits for it as much (the CUDA
    list left out 4 that no lease had reached: DTG-MA's mask mechanism and all-benchmarks forgetting,
    MyGO's storage and AG News)."""
    pending = dict(verdict="not run", mean=None, not_run="full protocol pending", reason="full protocol pending: ...",
                   tier="full", protocol="toy.protocols:big_table")
    records = [
        record("big-a", "A", "Acc", **pending),
        record("big-b", "B", "Acc", **pending),
        record("big-a", "A", "Acc", device="cuda", tier="full"),  # measured on CUDA
        record("big-b", "B", "Acc", device="cuda", tier="full"),
        record("proxy", "C", "Acc", **{**pending, "tier": "ci", "protocol": "toy.protocols:small"}),
        record("proxy", "C", "Acc", device="cuda", tier="ci"),
        record("no-file", "D", "Acc", verdict="not run", mean=None, not_run="input missing", tier="full",
               reason="CIFAR-100 is needed (cifar-100-python.tar.gz not in the data directory)"),
    ]
    text = summary.waiting(records, ("cpu", "cuda"), datasets={"big-a": ["mnist"], "big-b": ["mnist"]})
    assert "  - toy: `big_table` reading mnist: full protocol not run yet (2 claims)" in text.splitlines()
    assert "  - input missing (1 claim): CIFAR-100 is needed" in text.splitlines()
    assert "  - toy: `small`: full protocol not run yet (1 claim)" in text.splitlines()
    assert "- CUDA: none" in text
