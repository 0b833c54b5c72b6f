"""verify.results: the verdicts as DataFrames in one line, and as CSV."""

import shutil
from pathlib import Path

import pandas as pd

from verify import cli, results
from verify.store import read_export

FIXTURE = Path(__file__).parent / "fixtures" / "results-cpu.json"


def test_entries_and_seeds_load_in_one_line_each():
    table = results.entries(FIXTURE)
    document = read_export(FIXTURE)
    assert len(table) == len({(r["claim_id"], r["device"], r["torch_version"], r["profile"]) for r in document["verdicts"]})
    assert {"claim_id", "verdict", "label", "category", "mean", "interval_low", "n_seeds"} <= set(table.columns)
    per_seed = results.seeds(FIXTURE)
    assert len(per_seed) == table["n_seeds"].sum()  # an entry that did not run has no seed rows, and no error
    assert per_seed.groupby(["claim_id", "device"])["value"].mean().round(9).to_dict() == (
        table.dropna(subset=["mean"]).set_index(["claim_id", "device"])["mean"].round(9).to_dict())


def test_a_verdicts_json_and_a_store_give_the_same_rows(tmp_path):
    cli.main(["import", "--results", str(tmp_path / "results.sqlite"), str(FIXTURE)])
    from_store = results.entries(tmp_path / "results.sqlite").sort_values(["claim_id", "device"]).reset_index(drop=True)
    from_export = results.entries(FIXTURE).sort_values(["claim_id", "device"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(from_store, from_export)


def test_csv_export(tmp_path):
    shutil.copy(FIXTURE, tmp_path / "export.json")
    cli.main(["import", "--results", str(tmp_path / "r.sqlite"), str(tmp_path / "export.json")])
    assert cli.main(["export", "--results", str(tmp_path / "r.sqlite"), "--format", "csv", "--out",
                     str(tmp_path / "entries.csv")]) == 0
    assert cli.main(["export", "--results", str(tmp_path / "r.sqlite"), "--format", "csv", "--table", "seeds",
                     "--out", str(tmp_path / "seeds.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "entries.csv")) == len(results.entries(tmp_path / "r.sqlite"))
    assert list(pd.read_csv(tmp_path / "seeds.csv").columns) == list(results.SEED_COLUMNS)
