"""The same run identity on CPU gives byte-identical stored results."""

from pathlib import Path

import pytest

from verify.ledger import load_ledger
from verify.runner import Runner
from verify.store import ResultsStore

REPO = Path(__file__).resolve().parent.parent


def entry(ledger: str, claim_id: str):
    (found,) = [e for e in load_ledger(REPO / "claims" / ledger) if e.id == claim_id]
    return found


@pytest.mark.parametrize("ledger,claim_id", [
    ("sgm/claims.toml", "sgm-quickstart-retention"),
])
def test_rerun_gives_byte_identical_outputs(tmp_path, ledger, claim_id):
    claim = entry(ledger, claim_id)
    runner = Runner(ResultsStore(tmp_path / "r.sqlite"), tmp_path, use_cache=False, seed_limit=2, progress=lambda m: None)
    first_record = runner.evaluate(claim)
    first = [runner.store.raw_outputs(key) for key in first_record["run_keys"]]
    second_record = runner.evaluate(claim)
    second = [runner.store.raw_outputs(key) for key in second_record["run_keys"]]
    assert first_record["run_keys"] == second_record["run_keys"]
    assert first == second and all(first)
    assert first_record["values"] == second_record["values"]
